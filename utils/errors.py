"""The project's error types: one per failure kind, each with a machine code.

Business logic raises these and knows nothing of HTTP: no status codes, no route paths in messages.
The web layer (``routes/common.py``) maps each kind to its status and each code to a hint naming the
endpoint that fixes it, and turns any of them into the one error body ``{"error": {"code", "message",
"details"}}``.
"""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    """Base class: a failure the client can understand and act on."""

    code: str = "bad_request"

    def __init__(self, message: str, *, details: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code


class InvalidInput(AppError):
    code = "invalid_input"


class NotFound(AppError):
    code = "not_found"


class Conflict(AppError):
    code = "conflict"


class PayloadTooLarge(AppError):
    code = "payload_too_large"


class ExchangeError(AppError):
    """The exchange answered with an error we can name (bad symbol, rejected order...)."""

    code = "exchange_error"


class ExchangeUnavailable(AppError):
    """The exchange could not be reached or kept failing after retries."""

    code = "exchange_unavailable"


class DataUnavailable(AppError):
    code = "data_unavailable"


class Unauthorized(AppError):
    code = "unauthorized"


class ComputeUnavailable(AppError):
    """The compute backend (a Dask cluster, or the local worker processes) cannot run the work."""

    code = "compute_unavailable"
