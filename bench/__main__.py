"""`python -m bench [NAME ...]`: run the named benchmarks (all by default) and print a table."""

from __future__ import annotations

import sys

from bench import core, gateway

SUITES = {"core": core.run, "gateway": gateway.run}


def main(argv: list[str]) -> int:
    names = argv or list(SUITES)
    unknown = [name for name in names if name not in SUITES]
    if unknown:
        print(f"error: unknown benchmark {', '.join(unknown)}; known: {', '.join(SUITES)}")
        return 2
    for name in names:
        SUITES[name]()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
