"""What the store changes in how the Azure SDK sends a transaction, and why (azure-core is pinned).

For every entity-group transaction, azure-core 1.41 runs the header policy of each operation on
a new thread pool (nested once more for the changeset), and the response policy of each part of
the answer on another: some five to eight threads started and stopped for one request, a third
of its CPU. The policies only set and read headers; run one part after the other, here, they do
the same work. `run_batch_policies_in_turn` puts these in place once per process.
"""

from __future__ import annotations

from typing import Any

from azure.core.pipeline import Pipeline, PipelineContext, PipelineRequest, PipelineResponse
from azure.core.rest import _http_response_impl

_installed = False


def _prepare_parts(request: Any) -> None:
    """`Pipeline._prepare_multipart_mixed_request`, one part after the other."""
    if not request.multipart_mixed_info:
        return
    parts, policies, _, options = request.multipart_mixed_info[:4]
    for part in parts:
        _prepare_parts(part)
        step = PipelineRequest(part, PipelineContext(None, **options))
        for policy in policies:
            policy.on_request(step)


def _parts(response: Any) -> Any:
    """`_parts_helper` (a multipart answer's parts, its response policies run), in turn."""
    if not response.content_type or not response.content_type.startswith("multipart/mixed"):
        raise ValueError("You can't get parts if the response is not multipart/mixed")
    parts = response._get_raw_parts()
    if response.request.multipart_mixed_info:
        policies = response.request.multipart_mixed_info[1]
        for part in parts:
            context = PipelineContext(None)
            request = PipelineRequest(part.request, context)
            answered = PipelineResponse(part.request, part, context=context)
            for policy in policies:
                policy.on_response(request, answered)
    return parts


def run_batch_policies_in_turn() -> None:
    global _installed  # noqa: PLW0603 - one change per process
    if _installed:
        return
    Pipeline._prepare_multipart_mixed_request = staticmethod(_prepare_parts)  # type: ignore[method-assign]
    _http_response_impl._parts_helper = _parts  # type: ignore[attr-defined]
    _installed = True
