"""Indicators: import in batches, list by type and value, delete one or many."""

from __future__ import annotations

from collections.abc import Sequence

from joedefender.adapters.defender._calls import DEFAULT_PAGE_SIZE, ApiCalls, batches, odata_string, segment
from joedefender.adapters.defender.limiter import Family
from joedefender.adapters.defender.models import Indicator, IndicatorImportResult, IndicatorSpec

INDICATOR_BATCH = 500


class IndicatorCalls(ApiCalls):
    def import_indicators(self, specs: Sequence[IndicatorSpec]) -> list[IndicatorImportResult]:
        """Submit (create or update) indicators, at most 500 per call as Defender demands."""
        results: list[IndicatorImportResult] = []
        for batch in batches(specs, INDICATOR_BATCH):
            response = self._transport.request(
                "POST",
                "/api/indicators/import",
                family=Family.INDICATORS_IMPORT,
                operation="import_indicators",
                json={"Indicators": [spec.to_api() for spec in batch]},
            )
            results += self._values(response, IndicatorImportResult, "import_indicators")
        return results

    def list_indicators(
        self,
        *,
        value: str | None = None,
        type: str | None = None,
        title: str | None = None,
        created_by: str | None = None,
        application: str | None = None,
        values: Sequence[str] = (),
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> list[Indicator]:
        """Active indicators matching every given field; `values` is a targeted lookup of several
        values at once (`indicatorValue eq 'a' or indicatorValue eq 'b'`)."""
        clauses = [
            f"{field} eq {odata_string(item)}"
            for field, item in (
                ("indicatorValue", value),
                ("indicatorType", type),
                ("title", title),
                ("createdBy", created_by),
                ("application", application),
            )
            if item is not None
        ]
        if values:
            clauses.append("(" + " or ".join(f"indicatorValue eq {odata_string(v)}" for v in values) + ")")
        params = {"$filter": " and ".join(clauses)} if clauses else {}
        return list(
            self._paged(
                "/api/indicators",
                params,
                model=Indicator,
                family=Family.INDICATORS,
                operation="list_indicators",
                page_size=page_size,
            )
        )

    def delete_indicator(self, indicator_id: str) -> None:
        self._transport.request(
            "DELETE",
            f"/api/indicators/{segment(str(indicator_id))}",
            family=Family.INDICATORS,
            operation="delete_indicator",
            ok=(200, 204),
        )

    def batch_delete_indicators(self, ids: Sequence[str]) -> None:
        """Delete indicators by id, at most 500 per call; NotFoundError when one of a batch is gone."""
        for batch in batches([str(i) for i in ids], INDICATOR_BATCH):
            self._transport.request(
                "POST",
                "/api/indicators/BatchDelete",
                family=Family.INDICATORS_BATCH_DELETE,
                operation="batch_delete_indicators",
                json={"IndicatorIds": list(batch)},
                ok=(200, 204),
            )
