"""The one error shape of the API: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = headers


class NotBuilt(ApiError):
    """A read of what `billing db up` builds (dbt's views, the marts' live parts) on a
    warehouse that lacks it: 503 with ``code``, naming ``what``."""

    def __init__(self, code: str, what: str) -> None:
        super().__init__(503, code, f"the warehouse's {what} is not built yet: run `billing db up`")


def invalid_field(field: str, message: str) -> ApiError:
    """A 422 about one field of the request, named in the message and the details."""
    return ApiError(
        422, "invalid_request", f"{field}: {message}", [{"field": field, "message": message}]
    )


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


def error_body(code: str, message: str, details: list[Any] | None = None) -> dict[str, Any]:
    """The one error shape, for responses built without FastAPI too."""
    return {"error": {"code": code, "message": message, "details": details or []}}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {
                # the field's name, without where it was (body, query, path, header)
                "field": ".".join(str(p) for p in err["loc"][1:]) or str(err["loc"][0]),
                "message": err["msg"],
            }
            for err in exc.errors()
        ]
        fields = ", ".join(d["field"] for d in details) or "body"
        return error_response(422, "invalid_request", f"invalid {fields}", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = dict(exc.headers) if exc.headers else None
        if exc.status_code == 405:
            # a 405 names the methods allowed (Allow), as HTTP asks: those of every route
            # of the path (Starlette names only the first route's)
            headers = {**(headers or {}), "Allow": _allowed(request)}
        return error_response(exc.status_code, code, str(exc.detail), headers=headers)


def _allowed(request: Request) -> str:
    methods: set[str] = set()
    for route in request.app.routes:
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(request.url.path):
            methods |= set(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI responses of errors, every one in the one error shape."""
    from ingest.schemas import ErrorBody

    return {status: {"model": ErrorBody, "description": ERRORS[status]} for status in statuses}


ERRORS = {
    400: "Malformed JSON",
    401: "No or unknown key",
    403: "Another tenant's data",
    404: "Not found",
    405: "Method not allowed",
    409: "In conflict with the current state",
    413: "The body is too large",
    422: "Invalid input; the details name each field",
    503: "Not available now",
}
