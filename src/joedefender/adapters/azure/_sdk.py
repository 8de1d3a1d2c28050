"""What the store changes in how the Azure SDK sends a transaction, and why (azure-core is pinned).

For every entity-group transaction, azure-core 1.41 runs the header policy of each operation on
a new thread pool (nested once more for the changeset), and the response policy of each part of
the answer on another: some five to eight threads started and stopped for one request, a third
of its CPU. The policies only set and read headers; run one part after the other, here, they do
the same work. It then writes the multipart body through the standard library's `email`
package (a MIME message built, its headers parsed back and flattened): most of what is left of a
transaction's CPU. `_multipart_body` writes the same bytes directly (the tests compare the two on
transactions of every kind of operation). `run_batch_policies_in_turn` puts these in place once
per process.
"""

from __future__ import annotations

from typing import Any

from azure.core.pipeline import Pipeline, PipelineContext, PipelineRequest, PipelineResponse
from azure.core.rest import _helpers, _http_response_impl
from azure.core.utils import _pipeline_transport_rest_shared as _shared

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


def _multipart_body(request: Any, content_index: int = 0) -> int:
    """`_prepare_multipart_body_helper`: the multipart/mixed body of a batch (a changeset within
    it, its operations as application/http parts numbered by Content-ID), written as the `email`
    package flattens it; the next Content-ID."""
    info = request.multipart_mixed_info
    if not info:
        return 0
    parts, boundary = info[0], info[2]
    if not boundary:  # the package would make one up: let it
        return int(_shared._prepare_multipart_body_helper(request, content_index))
    delimiter = b"--" + boundary.encode("ascii")
    chunks: list[bytes] = []
    for part in parts:
        if part.multipart_mixed_info:
            content_index = _multipart_body(part, content_index)
            head = b"Content-Type: " + part.headers["Content-Type"].encode("ascii") + b"\r\n"
            payload = part.serialize()
            payload = payload[payload.index(b"--") :]  # without the request line and its headers
        else:
            head = b"Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
            head += b"Content-ID: %d\r\n" % content_index
            payload = part.serialize()
            content_index += 1
        chunks.append(delimiter + b"\r\n" + head + b"\r\n" + payload + b"\r\n")
    request.set_bytes_body(b"".join(chunks) + delimiter + b"--\r\n")
    request.headers["Content-Type"] = "multipart/mixed; boundary=" + boundary
    return content_index


def run_batch_policies_in_turn() -> None:
    global _installed  # noqa: PLW0603 - one change per process
    if _installed:
        return
    Pipeline._prepare_multipart_mixed_request = staticmethod(_prepare_parts)  # type: ignore[method-assign]
    _http_response_impl._parts_helper = _parts  # type: ignore[attr-defined]
    _helpers._prepare_multipart_body_helper = _multipart_body  # type: ignore[attr-defined,assignment]
    _installed = True
