"""The project's error types: one per failure kind, each with an HTTP status and a machine code.

Business logic raises these; the web layer turns any of them into the one error body
`{"error": {"code", "message", "details"}}` without knowing the individual kinds.
"""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    """Base class: a failure the client can understand and act on."""

    status_code: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, *, details: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code


class InvalidInput(AppError):
    status_code = 422
    code = "invalid_input"


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class Conflict(AppError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(AppError):
    status_code = 413
    code = "payload_too_large"


class ExchangeError(AppError):
    """The exchange answered with an error we can name (bad symbol, rejected order...)."""

    status_code = 502
    code = "exchange_error"


class ExchangeUnavailable(AppError):
    """The exchange could not be reached or kept failing after retries."""

    status_code = 503
    code = "exchange_unavailable"


class DataUnavailable(AppError):
    status_code = 503
    code = "data_unavailable"


class Unauthorized(AppError):
    status_code = 401
    code = "unauthorized"
