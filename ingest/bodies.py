"""Request bodies read with exact decimals and validated by pydantic, errors naming fields.

FastAPI's own body parsing turns JSON numbers into floats before a ``Decimal`` field sees
them; these bodies are parsed with ``loads`` (numbers stay decimals) and validated in
Python mode instead.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from ingest.errors import ApiError

MAX_SMALL_BODY = 64 * 1024  # a quota check, a subscription change
MAX_WEBHOOK_BODY = 1024 * 1024  # a Stripe event, read before its signature is checked
Model = TypeVar("Model", bound=BaseModel)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _number(text: str) -> Decimal:
    """A JSON number with a fraction or an exponent, exactly, from its text; one whose
    exponent no Decimal holds (1e9999999999999999999) is refused, not a 500."""
    try:
        return Decimal(text)
    except InvalidOperation:
        raise ValueError(f"the number {text[:40]} is out of range") from None


def loads(text: bytes | str) -> Any:
    """JSON with exact decimals: a JSON number never passes through a float. Every JSON body
    of the API is read here; a ValueError says what is wrong with it."""
    try:
        return json.loads(text, parse_float=_number, parse_constant=_no_constants)
    except RecursionError:
        # Python's decoder recurses once per level: a body nested about 1,000 deep
        raise ValueError("it is nested too deeply") from None


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, refused with a 413 as soon as it is known to pass ``limit`` bytes:
    by its Content-Length before anything is read, else while it streams in (nothing past the
    limit is read)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "payload_too_large", f"at most {limit} bytes a request")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "payload_too_large", f"at most {limit} bytes a request")
        chunks.append(chunk)
    return b"".join(chunks)


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"field": ".".join(str(p) for p in err["loc"]) or "body", "message": err["msg"]}
        for err in exc.errors()
    ]


# The models documented as request bodies (read with `read_model`, not by FastAPI): their
# schemas go into the OpenAPI document's components, where every $ref points.
BODY_MODELS: dict[str, type[BaseModel]] = {}
REF_TEMPLATE = "#/components/schemas/{model}"


def json_body(
    model: type[BaseModel], *, also: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """``openapi_extra`` of a route whose JSON body is ``model`` (and the media types of
    ``also``, with their schemas)."""
    BODY_MODELS[model.__name__] = model
    content = {"application/json": {"schema": {"$ref": REF_TEMPLATE.format(model=model.__name__)}}}
    return {"requestBody": {"required": True, "content": content | (also or {})}}


def body_schemas() -> dict[str, Any]:
    """The component schemas of every documented body model and the models they use."""
    found: dict[str, Any] = {}
    for name, model in BODY_MODELS.items():
        schema = model.model_json_schema(ref_template=REF_TEMPLATE)
        found.update(schema.pop("$defs", {}))
        found[name] = schema
    return found


async def read_model(request: Request, model: type[Model]) -> Model:
    return parse_model(await read_body(request, MAX_SMALL_BODY), model)


def parse_model(body: bytes, model: type[Model]) -> Model:
    """``model`` from a body read by ``read_body`` (which capped it)."""
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
