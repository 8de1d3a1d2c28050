"""Run checkov on the ARM templates and fail on any failed check, parsing error or unexplained skip.

checkov exits 0 when a template does not parse (it only counts `parsing_errors`), and takes a
skip without a reason; both would let a broken or weakened template through, so the verdict is
taken from its JSON report instead of its exit status. checkov lives in its own virtual
environment (`make check-deploy` creates `.venv-checkov/`): its dependencies clash with ours.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

NO_REASON = "No comment provided"  # what checkov records for a skip written without a reason


def reports(output: str) -> list[Mapping[str, Any]]:
    """checkov prints one report object, or a list of them (one per framework)."""
    document = json.loads(output)
    found = document if isinstance(document, list) else [document]
    if not found or not all(isinstance(report, dict) and "summary" in report for report in found):
        raise ValueError("checkov's output is not a report (no summary)")
    # checkov's summary counts skips even where its results list leaves them out; the two must agree.
    for report in found:
        listed = len(report.get("results", {}).get("skipped_checks", []))
        if listed != report["summary"].get("skipped", 0):
            raise ValueError(f"checkov reported {report['summary'].get('skipped')} skips but listed {listed}")
    return found


def problems(found: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every reason to fail, one line each; empty when the templates pass."""
    lines = []
    for report in found:
        summary = report["summary"]
        if summary.get("parsing_errors", 0):
            lines.append(f"{summary['parsing_errors']} template(s) could not be parsed")
        results = report.get("results", {})
        for check in results.get("failed_checks", []):
            lines.append(
                f"failed {check['check_id']} ({check['check_name']}) on {check['resource']} in {check['file_path']}"
            )
        for check in results.get("skipped_checks", []):
            reason = reason_of(check)
            if not reason or reason == NO_REASON:
                lines.append(f"skipped {check['check_id']} on {check['resource']} without a reason")
    return lines


def reason_of(check: Mapping[str, Any]) -> str:
    result = check.get("check_result") or {}
    return str(result.get("suppress_comment") or check.get("suppress_comment") or "").strip()


def skipped(found: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, str]]:
    """(check id, file, reason) of every skip, for the summary line."""
    return [
        (check["check_id"], check["file_path"], reason_of(check))
        for report in found
        for check in report.get("results", {}).get("skipped_checks", [])
    ]


def run(checkov: Path, directory: Path) -> str:
    if not checkov.is_file():
        raise FileNotFoundError(f"{checkov} is missing: `make check-deploy` installs it")
    # Not --quiet: it leaves the skipped checks out of the report, and their reasons are checked here.
    command = [str(checkov), "-d", str(directory), "--framework", "arm", "--compact", "--skip-download", "-o", "json"]
    # LOG_LEVEL: checkov warns about every parameter without a default value on stderr.
    environment = {**os.environ, "LOG_LEVEL": "ERROR"}
    completed = subprocess.run(command, capture_output=True, text=True, check=False, env=environment, timeout=300)
    if completed.returncode not in (0, 1) or not completed.stdout.strip():  # 1: checks failed, reported below
        raise RuntimeError(f"checkov exited {completed.returncode}: {completed.stderr.strip()[-2000:]}")
    return completed.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--checkov", type=Path, required=True, help="the checkov executable")
    parser.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        found = reports(run(args.checkov, args.directory))
    except (OSError, RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
        print(f"check-deploy: {exc}", file=sys.stderr)
        return 2
    wrong = problems(found)
    for line in wrong:
        print(f"check-deploy: {line}", file=sys.stderr)
    passed = sum(report["summary"].get("passed", 0) for report in found)
    failed = sum(report["summary"].get("failed", 0) for report in found)
    skips = skipped(found)
    ids = sorted({check_id for check_id, _, _ in skips})
    print(
        f"checkov on {args.directory}: {passed} passed, {failed} failed, {len(skips)} skipped "
        f"({', '.join(ids) or 'none'}, each with its reason in the template) in {time.monotonic() - started:.1f} s"
    )
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
