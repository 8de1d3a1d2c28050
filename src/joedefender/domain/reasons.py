"""Why an alert was skipped or a sample job or collection attempt failed: a code the workflow
compares, and beside it the text the analyst reads (in the alert comment and in `status`).

A reason never is a free string: code decides by `Reason`, and `detail` only adds the facts
(the filter value, the minutes, what Defender said) to the text.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class Reason(StrEnum):
    # alerts
    FILTERED = "filtered"
    TITLE_FILTERED = "title_filtered"
    NO_EVIDENCE = "no_evidence"
    ALERT_UNKNOWN = "alert_unknown"
    # sample jobs
    NO_CANDIDATE = "no_candidate"
    QUARANTINE_NOT_FOUND_ANYWHERE = "quarantine_not_found_anywhere"
    NOT_COLLECTED = "not_collected"
    LIVE_RESPONSE_NOT_ALLOWED = "live_response_not_allowed"
    MACHINES_UNAVAILABLE = "machines_unavailable"
    RESTORE_NOT_ALLOWED = "restore_not_allowed"
    ANALYSIS_TIMEOUT = "analysis_timeout"
    NO_ANALYSIS = "no_analysis"
    GAVE_UP = "gave_up"
    REJECTED = "rejected"
    # collection attempts
    MACHINE_NOT_FOUND = "machine_not_found"
    ACTION_LOST = "action_lost"
    ACTION_TIMEOUT = "action_timeout"
    ACTION_FAILED = "action_failed"
    QUARANTINE_NOT_FOUND = "quarantine_not_found"
    SCRIPT_FAILED = "script_failed"
    WORK_FOLDER_UNSAFE = "work_folder_unsafe"
    HASH_MISMATCH = "hash_mismatch"

    @property
    def text(self) -> str:
        """The analyst-facing text; `{detail}` is filled in from the cause."""
        return _TEXT[self]


_TEXT: dict[Reason, str] = {
    Reason.FILTERED: "{detail} is not in the configured filter",
    Reason.TITLE_FILTERED: "title matches none of DefenderAlertTitleFilter",
    Reason.NO_EVIDENCE: "no file (sha256) or URL evidence{detail}",
    Reason.ALERT_UNKNOWN: "Defender does not know this alert id",
    Reason.NO_CANDIDATE: "no machine is known to carry the file",
    Reason.QUARANTINE_NOT_FOUND_ANYWHERE: "quarantine entry not found on any machine{detail}",
    Reason.NOT_COLLECTED: "could not collect the file: {detail}",
    Reason.LIVE_RESPONSE_NOT_ALLOWED: "live response is not allowed: {detail}",
    Reason.MACHINES_UNAVAILABLE: "no machine carrying the file was online and free within {detail} minutes",
    Reason.RESTORE_NOT_ALLOWED: (
        "the file could not be fetched where the alert saw it, and on Linux and macOS a quarantined file can"
        " only be recovered by restoring it, which takes the entry out of Defender's quarantine:"
        " AllowQuarantineRestore=true allows it{detail}"
    ),
    Reason.ANALYSIS_TIMEOUT: "the analysis did not finish within {detail} minutes",
    Reason.NO_ANALYSIS: "Joe Sandbox finished the submission without an analysis",
    Reason.GAVE_UP: "gave up after {detail}",
    Reason.REJECTED: "refused as invalid, not retried: {detail}",
    Reason.MACHINE_NOT_FOUND: "machine not found: {detail}",
    Reason.ACTION_LOST: "Defender lost the live response action",
    Reason.ACTION_TIMEOUT: "live response did not finish within {detail} minutes",
    Reason.ACTION_FAILED: "{detail}",
    Reason.QUARANTINE_NOT_FOUND: "quarantine entry not found on this machine",
    Reason.SCRIPT_FAILED: "the collection script failed: {detail}",
    Reason.WORK_FOLDER_UNSAFE: (
        "the endpoint's work folder is not the connector's own; nothing was done there: {detail}"
    ),
    Reason.HASH_MISMATCH: "the collected bytes hash to {detail}, not the evidence's sha256; rejected",
}


class Cause(BaseModel):
    """A reason with its facts, as stored in a record."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    reason: Reason
    detail: str = ""

    @property
    def text(self) -> str:
        return self.reason.text.format(detail=self.detail)

    def __str__(self) -> str:
        return self.text
