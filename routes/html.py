"""HTML pages of the API (the reports): the response with its Content-Security-Policy, and how
/openapi.json documents it (a `text/html` 200 beside the usual JSON error bodies). Not a router."""

from __future__ import annotations

from typing import Any

from fastapi.responses import HTMLResponse

from routes.common import AppContext, error_responses
from utils.reports.render import CSP

EXAMPLE = '<!doctype html>\n<html lang="en" data-report="backtest" data-rendered="false">...</html>'


def html_page(ctx: AppContext, page: str) -> HTMLResponse:
    """`page` with the report policy: inline scripts and styles only, no request to anything; framed by
    this server and the dashboard's origins (CORS_ORIGINS) only."""
    ancestors = " ".join(["'self'", *ctx.settings.cors_origins])
    return HTMLResponse(page, headers={"content-security-policy": f"{CSP}; frame-ancestors {ancestors}"})


def html_responses(what: str, *errors: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries of a report route: the page as `text/html`, then the errors it can answer."""
    return {
        200: {
            "description": f"{what}: one self-contained HTML page (plotly.js embedded; no network request).",
            "content": {"text/html": {"schema": {"type": "string"}, "example": EXAMPLE}},
        },
        **error_responses(*errors, stream=True),  # errors are JSON, whatever the page type
    }
