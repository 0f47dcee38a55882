"""Error responses: ``{"errors": {"body": [...], "<field>": [...]}}`` with the spec's status codes.

The spec's ``GenericErrorModel`` requires ``errors.body`` (a list of messages); RealWorld
clients also read per-field lists (``errors.email``), so both are sent.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class ApiError(Exception):
    """An error answer: status code and ``{field: [messages]}`` (field ``body`` for general ones)."""

    def __init__(self, status: int, errors: dict[str, list[str]], headers: dict[str, str] | None = None):
        super().__init__(status, errors)
        self.status = status
        self.errors = errors
        self.headers = headers


def unauthorized(message: str = "missing or invalid authorization token") -> ApiError:
    return ApiError(401, {"body": [message]}, headers={"WWW-Authenticate": "Token"})


def forbidden(message: str) -> ApiError:
    return ApiError(403, {"body": [message]})


def not_found(what: str) -> ApiError:
    return ApiError(404, {"body": [f"{what} not found"]})


def invalid(field: str, message: str) -> ApiError:
    return ApiError(422, {field: [message]})


def error_body(errors: dict[str, list[str]]) -> dict[str, Any]:
    messages = [
        message if field == "body" else f"{field} {message}"
        for field, items in errors.items()
        for message in items
    ]
    return {"errors": {**errors, "body": messages}}


def install(app: FastAPI) -> None:
    """Answer every error, FastAPI's and Starlette's own included, in the spec's format."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.errors), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors: dict[str, list[str]] = {}
        for error in exc.errors():
            # ("body", "user", "email") -> "email"; ("query", "limit") -> "limit"
            location = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path")]
            field = location[-1] if location else "body"
            errors.setdefault(field, []).append(str(error.get("msg", "is invalid")).lower())
        return JSONResponse(error_body(errors), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            error_body({"body": [str(exc.detail)]}), status_code=exc.status_code, headers=exc.headers
        )
