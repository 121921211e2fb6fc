"""Logging for the whole app: one setup, a request id on every line, and no secret in any line."""

from __future__ import annotations

import contextvars
import logging
import re
import sys
from collections.abc import Iterable
from typing import TextIO

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

_FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"
# Values that are secret whatever their configured value: query signatures, API-key headers,
# bearer tokens and key=value pairs whose key names a secret.
_SECRET_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"(signature=)[0-9a-fA-F]+"),
    re.compile(r"(X-MBX-APIKEY['\"]?\s*[:=]\s*['\"]?)[^'\",\s}]+", re.IGNORECASE),
    re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE),
    re.compile(
        r"((?:api[_-]?key|api[_-]?secret|secret|password|token)['\"]?\s*[:=]\s*['\"]?)[^'\",\s&}]+",
        re.IGNORECASE,
    ),
)
_REDACTED = "***"


class _RedactingFilter(logging.Filter):
    """Scrubs known secret values and secret-looking patterns from the final message."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first so a secret that contains another is replaced whole.
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        message = record.getMessage()
        # One record, one line: user text with newlines (a halt reason, a file name) cannot forge
        # log lines of its own. Tracebacks are appended below, deliberately multi-line.
        cleaned = redact(message, self.secrets).replace("\r", "\\r").replace("\n", "\\n")
        if record.exc_info:
            # Tracebacks can carry request URLs with signatures: format and scrub them here.
            text = logging.Formatter().formatException(record.exc_info)
            cleaned = f"{cleaned}\n{redact(text, self.secrets)}"
            record.exc_info = None
            record.exc_text = None
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every given secret and every secret-looking pattern replaced by ***."""
    for secret in secrets:
        text = text.replace(secret, _REDACTED)
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + _REDACTED, text)
    return text


ACCESS_LOGGER = "app.access"


class _AppHandler(logging.StreamHandler[TextIO]):
    """The app's own handler, told apart from handlers others installed."""


def setup_logging(level: str, secrets: Iterable[str] = ()) -> None:
    """Install the app's single handler on the root logger (idempotent: replaces ours, keeps others)."""
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, _AppHandler):
            root.removeHandler(old)
    handler = _AppHandler(sys.stderr)
    handler.addFilter(_RedactingFilter(secrets))
    handler.setFormatter(logging.Formatter(_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
    # urllib3 logs full request URLs (with signatures) at DEBUG; keep it at WARNING.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    # The app writes one access line per request itself (ACCESS_LOGGER: with the request id and the
    # time taken), so uvicorn's own would be a second. `uvicorn --no-access-log` has already left its
    # access logger with no handler and not propagating: then the app's line is off as well.
    # Only `disabled` is set on uvicorn's logger, so a second app in the process reads the same signs.
    access = logging.getLogger("uvicorn.access")
    logging.getLogger(ACCESS_LOGGER).disabled = not access.handlers and not access.propagate
    access.disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        uv = logging.getLogger(name)
        uv.handlers = []
        uv.propagate = True


def add_secrets(secrets: Iterable[str]) -> None:
    """Register more secret values (e.g. an API key generated after setup) with our handler."""
    for handler in logging.getLogger().handlers:
        if getattr(handler, "_trading_backend", False):
            for flt in handler.filters:
                if isinstance(flt, _RedactingFilter):
                    merged = set(flt.secrets) | {s for s in secrets if len(s) >= 4}
                    flt.secrets = sorted(merged, key=len, reverse=True)
