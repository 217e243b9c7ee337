"""Reading a JSON body: size limits, then one object or a list of them, each parsed by the validation boundary."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from faust.web import Request

from salepulse.schemas.json_input import InputError
from salepulse.streams.api.errors import HTTPProblem

MAX_BATCH = 10_000


async def json_body(request: Request, max_bytes: int) -> Any:
    length = request.content_length
    if length is not None and length > max_bytes:
        raise HTTPProblem(413, f"body of {length} bytes is over the {max_bytes}-byte limit; send smaller batches")
    body = await request.read()
    if len(body) > max_bytes:
        raise HTTPProblem(413, f"body is over the {max_bytes}-byte limit; send smaller batches")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise HTTPProblem(400, f"body is not JSON: {exc}") from None


def parse_each(body: Any, parse: Callable[[Any], Any],
               id_field: str | None = None) -> tuple[list[Any], list[dict[str, Any]]]:
    """Parse one JSON object or a list of them: the parsed ones, and each refused one with its index and problems."""
    rows = body if isinstance(body, list) else [body]
    if len(rows) > MAX_BATCH:
        raise HTTPProblem(413, f"{len(rows)} items in one request; send at most {MAX_BATCH}")
    parsed, refused = [], []
    for index, row in enumerate(rows):
        try:
            parsed.append(parse(row))
        except InputError as error:
            item: dict[str, Any] = {"index": index}
            if id_field:
                item[id_field] = row.get(id_field) if isinstance(row, dict) else None
            refused.append({**item, "problems": error.problems})
    return parsed, refused
