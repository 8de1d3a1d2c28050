"""Alerts: listing by time window with their evidence, reading by ids, comments (one PATCH or a
batchUpdate), and the alert update (status, classification, determination)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime

from joedefender.adapters._microsoft.calls import format_time
from joedefender.adapters.defender._calls import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    ApiCalls,
    any_of,
    batches,
    segment,
)
from joedefender.adapters.defender.limiter import Family
from joedefender.adapters.defender.models import Alert

# docs silent on how many alertIds one batchUpdate takes: as many as an indicator import.
ALERT_BATCH = 500


class AlertCalls(ApiCalls):
    def list_alerts(
        self,
        since: datetime,
        until: datetime | None = None,
        *,
        time_field: str = "lastUpdateTime",
        statuses: Iterable[str] = (),
        severities: Iterable[str] = (),
        detection_sources: Iterable[str] = (),
        expand_evidence: bool = True,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> Iterator[Alert]:
        """Alerts whose `time_field` lies in [since, until), paged with `$top`/`$skip`.

        The window's end is fixed when iteration starts (now, when not given) so later alerts
        cannot shift the pages; an alert updated meanwhile leaves this window and lands in the
        next one. Alerts seen on an earlier page are not yielded twice.
        """
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be within 1..{MAX_PAGE_SIZE}")
        end = until if until is not None else datetime.now(UTC)
        clauses = [f"{time_field} ge {format_time(since)}", f"{time_field} lt {format_time(end)}"]
        for field, values in (
            ("status", statuses),
            ("severity", severities),
            ("detectionSource", detection_sources),
        ):
            clause = any_of(field, values)
            if clause is not None:
                clauses.append(clause)
        params = {"$filter": " and ".join(clauses)}
        if expand_evidence:
            params["$expand"] = "evidence"
        seen: set[str] = set()
        for alert in self._paged(
            "/api/alerts",
            params,
            model=Alert,
            family=Family.ALERTS,
            operation="list_alerts",
            page_size=page_size,
        ):
            if alert.id not in seen:
                seen.add(alert.id)
                yield alert

    def get_alert(self, alert_id: str) -> Alert:
        response = self._get(f"/api/alerts/{segment(alert_id)}", Family.ALERTS, "get_alert")
        return self._model(response, Alert, "get_alert")

    def get_alerts(self, alert_ids: Iterable[str], *, expand_evidence: bool = True) -> Iterator[Alert]:
        """The alerts with these ids that Defender has (an unknown id is simply absent), read
        with as few list calls as the URL allows instead of one GET each."""
        extra = {"$expand": "evidence"} if expand_evidence else {}
        yield from self._by_ids(
            "/api/alerts", alert_ids, extra, model=Alert, family=Family.ALERTS, operation="get_alerts"
        )

    def batch_update_alerts(self, alert_ids: Sequence[str], *, comment: str) -> None:
        """The same comment on every alert, ALERT_BATCH alerts per POST /api/alerts/batchUpdate
        (its own 10/min, 500/h budget). Not repeated on an ambiguous timeout: read the comments."""
        for batch in batches(list(dict.fromkeys(alert_ids)), ALERT_BATCH):
            self._transport.request(
                "POST",
                "/api/alerts/batchUpdate",
                family=Family.ALERTS_BATCH_UPDATE,
                operation="batch_update_alerts",
                json={"alertIds": list(batch), "comment": comment},
                ok=(200, 204),
                idempotent=False,
            )

    def add_comment(self, alert_id: str, text: str) -> Alert:
        """Add a comment; not repeated on an ambiguous timeout (look at the alert's comments first)."""
        return self.update_alert(alert_id, comment=text)

    def update_alert(
        self,
        alert_id: str,
        *,
        status: str | None = None,
        classification: str | None = None,
        determination: str | None = None,
        assigned_to: str | None = None,
        comment: str | None = None,
    ) -> Alert:
        body = {
            key: value
            for key, value in (
                ("status", status),
                ("classification", classification),
                ("determination", determination),
                ("assignedTo", assigned_to),
                ("comment", comment),
            )
            if value is not None
        }
        if not body:
            raise ValueError("update_alert needs at least one change")
        response = self._transport.request(
            "PATCH",
            f"/api/alerts/{segment(alert_id)}",
            family=Family.ALERTS,
            operation="update_alert",
            json=body,
            idempotent=comment is None,
        )
        return self._model(response, Alert, "update_alert")

    # --- machines and machine actions ---------------------------------------------------------------
