"""Request bodies read with exact decimals and validated by pydantic, errors naming fields.

FastAPI's own body parsing turns JSON numbers into floats before a ``Decimal`` field sees
them; these bodies are parsed with ``loads`` (numbers stay decimals) and validated in
Python mode instead.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from ingest.errors import ApiError
from ingest.routes.events import loads

MAX_SMALL_BODY = 64 * 1024
Model = TypeVar("Model", bound=BaseModel)


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"field": ".".join(str(p) for p in err["loc"]) or "body", "message": err["msg"]}
        for err in exc.errors()
    ]


async def read_model(request: Request, model: type[Model]) -> Model:
    return parse_model(await request.body(), model)


def parse_model(body: bytes, model: type[Model]) -> Model:
    if len(body) > MAX_SMALL_BODY:
        raise ApiError(413, "payload_too_large", f"at most {MAX_SMALL_BODY} bytes")
    try:
        document = loads(body) if body.strip() else {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        details = validation_details(exc)
        fields = ", ".join(d["field"] for d in details)
        raise ApiError(422, "invalid_request", f"invalid {fields}", details) from None
