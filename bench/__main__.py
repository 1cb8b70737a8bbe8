"""`python -m bench [NAME ...] [--servers]`: run the named benchmarks (all by default) and print
a table. `python -m bench peers [NAME ...]` installs the peers' venvs under `.bench/`."""

from __future__ import annotations

import sys
from collections.abc import Callable


def _core(flags: list[str]) -> None:
    from bench import core

    core.run()


def _gateway(flags: list[str]) -> None:
    from bench import gateway  # runs Capstan as a subprocess: no import of the app here

    gateway.run(flags)


def _finops(flags: list[str]) -> None:
    from bench import finops

    finops.run()


def _prompts(flags: list[str]) -> None:
    from bench import prompts

    prompts.run()


def _serving(flags: list[str]) -> None:
    from bench import serving

    serving.run()


SUITES: dict[str, Callable[[list[str]], None]] = {
    "core": _core,
    "finops": _finops,
    "gateway": _gateway,
    "prompts": _prompts,
    "serving": _serving,
}


def main(argv: list[str]) -> int:
    if argv[:1] == ["peers"]:
        from bench import peers

        return peers.main(argv[1:])
    flags = [arg for arg in argv if arg.startswith("--")]
    names = [arg for arg in argv if not arg.startswith("--")] or list(SUITES)
    unknown = [name for name in names if name not in SUITES]
    if unknown:
        print(f"error: unknown benchmark {', '.join(unknown)}; known: {', '.join(SUITES)}, peers")
        return 2
    for name in names:
        SUITES[name](flags)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
