"""Reading a request body: the content type, then at most ``max_bytes`` whatever Content-Length says."""

from __future__ import annotations

from faust.web import Request

from salepulse.streams.domain import collector
from salepulse.streams.runtime.api.errors import HTTPProblem


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, read at most ``max_bytes`` far whatever Content-Length says (chunked, gzip)."""
    refusal = collector.content_type_problem(request.headers.get("Content-Type"))
    if refusal is not None:
        raise HTTPProblem(refusal.status, refusal.body["error"])
    if request.content_length is not None and request.content_length > max_bytes:
        raise HTTPProblem(413, f"body of {request.content_length} bytes is over the {max_bytes}-byte limit; "
                               "send smaller batches")
    chunks, size = [], 0
    try:
        while chunk := await request.content.readany():
            size += len(chunk)
            if size > max_bytes:
                raise HTTPProblem(413, f"body is over the {max_bytes}-byte limit; send smaller batches")
            chunks.append(chunk)
    except HTTPProblem:
        raise
    except Exception as exc:  # a broken gzip stream or a connection cut mid-body: the caller's input, not ours
        raise HTTPProblem(400, f"body could not be read: {type(exc).__name__}") from None
    return b"".join(chunks)
