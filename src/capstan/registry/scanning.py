"""Pickle safety of an artifact, judged by picklescan before the artifact is ever stored.

Unpickling runs code, so a pickle-bearing artifact is only accepted when picklescan finds no
dangerous global in it. The judgement fails closed: a scan that errors, a stream picklescan
could only partly parse, or a file that claims to be a pickle but does not parse as one is
unsafe. Which files are pickles is decided by their content as well as their name, since the
name is chosen by whoever uploads the file.
"""

from __future__ import annotations

import pickletools
import zipfile
from dataclasses import dataclass
from pathlib import Path

from picklescan.scanner import SafetyLevel, scan_file_path  # type: ignore[import-untyped]

from capstan.errors import InvalidInput

# Extensions whose files are pickles (or torch checkpoints: a zip of pickles, or legacy pickles).
PICKLE_EXTENSIONS = frozenset({".pkl", ".pickle", ".joblib", ".pt", ".pth", ".bin", ".ckpt"})
# Pickle protocols 2-5 open with PROTO (0x80) and the version; picklescan also counts 0 and 1.
_PICKLE_HEADERS = tuple(bytes([0x80, version]) for version in range(6))


@dataclass(frozen=True, slots=True)
class ScanReport:
    """`issues` make the artifact unsafe; `suspicious` are globals picklescan does not know to
    be harmless (a scikit-learn class, say) and are reported for the operator, not refused."""

    safe: bool
    scanned_files: int
    issues: tuple[str, ...] = ()
    suspicious: tuple[str, ...] = ()

    def summary(self) -> str:
        files = "1 file" if self.scanned_files == 1 else f"{self.scanned_files} files"
        if self.safe and not self.scanned_files:
            return "Safe: no pickle data in the artifact."
        if self.safe:
            text = f"Safe: scanned {files} and found no dangerous import."
            if self.suspicious:
                text += f" Not known to be harmless: {', '.join(self.suspicious)}."
            return text
        count = "1 issue" if len(self.issues) == 1 else f"{len(self.issues)} issues"
        return (
            f"Unsafe: scanned {files} and found {count}: {'; '.join(self.issues)}. "
            "Register the model as ONNX or skops instead of a pickle."
        )


class UnsafeArtifact(InvalidInput):
    slug = "unsafe-artifact"
    title = "Unsafe artifact"

    def __init__(self, report: ScanReport) -> None:
        super().__init__(report.summary(), issues=list(report.issues))
        self.report = report


def require_safe(path: Path) -> ScanReport:
    report = scan_artifact(path)
    if not report.safe:
        raise UnsafeArtifact(report)
    return report


def scan_artifact(path: Path) -> ScanReport:
    name = path.name
    with path.open("rb") as handle:
        head = handle.read(2)
    is_archive = zipfile.is_zipfile(path)
    claims_pickle = path.suffix.lower() in PICKLE_EXTENSIONS or head in _PICKLE_HEADERS
    try:
        # Every file goes through picklescan, whatever its name: a protocol 0 or 1 pickle has
        # no header, so only its opcodes (GLOBAL and friends) give it away. ONNX protobuf,
        # xgboost JSON/UBJ and LightGBM text fail to parse at once and show no global.
        result = scan_file_path(str(path))
    except Exception as exc:  # any failure of the scanner is a failed scan: fail closed
        return ScanReport(False, 1, (f"{name}: the scan failed ({_short(exc)})",))

    issues: list[str] = []
    suspicious: list[str] = []
    for found in result.globals:
        label = f"{found.module}.{found.name}"
        if found.safety == SafetyLevel.Dangerous:
            issues.append(f"{name}: {label} (dangerous global)")
        elif found.safety == SafetyLevel.Suspicious:
            suspicious.append(label)
    if result.issues_count and not issues:
        issues.append(f"{name}: {result.issues_count} issue(s) reported by picklescan")
    if result.scan_err:
        issues.append(f"{name}: picklescan could not parse the whole pickle stream")
    if claims_pickle and not is_archive and not result.scan_err:
        # picklescan passes a stream it cannot parse at all when no global was seen
        # ("not a pickle"); a file that says it is a pickle and is not one is refused instead.
        problem = _pickle_problem(path)
        if problem:
            issues.append(f"{name}: not a well-formed pickle ({problem})")

    carries_pickles = is_archive or claims_pickle or bool(result.globals)
    scanned = int(result.scanned_files) if carries_pickles else 0
    return ScanReport(
        safe=not issues,
        scanned_files=max(scanned, 1) if issues else scanned,
        issues=tuple(issues),
        suspicious=tuple(sorted(set(suspicious))),
    )


def _pickle_problem(path: Path) -> str | None:
    """Why the first pickle in the file does not parse to its STOP opcode, if it does not.

    Only the opcode stream is read (pickletools never imports or calls anything); deciding
    which globals are dangerous stays picklescan's job.
    """
    try:
        with path.open("rb") as handle:
            for _ in pickletools.genops(handle):  # stops after STOP, raises if it never comes
                pass
    except Exception as exc:  # whatever pickletools rejects is malformed
        return _short(exc)
    return None


def _short(exc: BaseException, limit: int = 160) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
