"""The verdict `make check-deploy` draws from checkov's report (checkov itself runs there: its
exit status alone would pass a template that does not parse, or a skip without a reason)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from deploy import checkov_gate


def report(*, failed: int = 0, parsing_errors: int = 0, skips: list[str] | None = None) -> dict[str, Any]:
    skipped = [
        {
            "check_id": f"CKV_AZURE_{n}",
            "resource": "r",
            "file_path": "/t.json",
            "check_result": {"suppress_comment": reason},
        }
        for n, reason in enumerate(skips or [])
    ]
    failures = [
        {"check_id": "CKV_AZURE_3", "check_name": "https only", "resource": "r", "file_path": "/t.json"}
    ] * failed
    summary = {"passed": 3, "failed": failed, "skipped": len(skipped), "parsing_errors": parsing_errors}
    return {"summary": summary, "results": {"failed_checks": failures, "skipped_checks": skipped}}


def test_a_clean_report_with_explained_skips_passes() -> None:
    found = checkov_gate.reports(json.dumps(report(skips=["no VNet: the app reaches storage publicly"])))
    assert checkov_gate.problems(found) == []


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (report(failed=1), "failed CKV_AZURE_3 (https only) on r in /t.json"),
        (report(parsing_errors=2), "2 template(s) could not be parsed"),
        (report(skips=["No comment provided"]), "skipped CKV_AZURE_0 on r without a reason"),
        (report(skips=["  "]), "skipped CKV_AZURE_0 on r without a reason"),
    ],
)
def test_failures_parsing_errors_and_silent_skips_fail(given: dict[str, Any], expected: str) -> None:
    assert checkov_gate.problems(checkov_gate.reports(json.dumps([given]))) == [expected]


def test_a_report_that_leaves_its_skips_out_is_refused() -> None:
    quiet = report(skips=["reason"])
    quiet["results"]["skipped_checks"] = []  # what --quiet does
    with pytest.raises(ValueError, match="1 skips but listed 0"):
        checkov_gate.reports(json.dumps(quiet))


def test_a_missing_checkov_is_an_error_not_a_pass(tmp_path: Any) -> None:
    assert checkov_gate.main(["--checkov", str(tmp_path / "checkov"), str(tmp_path)]) == 2
