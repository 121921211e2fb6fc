"""A ``Report`` (utils.reports.document) as one self-contained HTML page: the only module that knows plotly.

Why plotly: its Python package ships plotly.js, so a page can carry the library itself and draw
interactive charts (zoom, hover, legend toggles) with no network at all; candlesticks, lines, bars,
markers and heatmaps are all first-class traces. Each chart is one plotly figure whose panels share an
x axis (price over volume over indicators, equity over drawdown).

Offline, by construction:

* plotly.js is embedded once per page, gzip-compressed and base64-encoded, and unpacked in the browser
  with ``DecompressionStream`` (Chrome 80, Firefox 113, Safari 16.4 and later). The library is 4.8 MB
  as is and 2.0 MB packed, which leaves a report of a 1,000,000-bar backtest well under 5 MB.
* The page's own Content-Security-Policy (a meta tag, so it holds wherever the file is opened, also in
  an ``<iframe srcdoc>``) allows inline scripts and styles and ``data:``/``blob:`` images (plotly's
  "download as PNG") and nothing else: no fetch, no outside script, font or image.
* Fonts are the system's.

Downsampling (``utils.reports.downsample``): series on a time or number axis longer than the limits
below are cut into buckets that keep their extremes; each chart that was downsampled says so under it
(``data-downsampled`` on its figure element), with the counts before and after.

The page marks itself ``data-rendered="true"`` on ``<html>`` once every chart is drawn (``"failed"``
with the reason shown when the library cannot run), and leaves ``window.reportTiming`` (ms since
navigation: the library ready, the first chart and all charts drawn) for benchmarks.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import plotly
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs_version
from plotly.subplots import make_subplots

from utils.reports.document import (
    Bars,
    Block,
    Candles,
    Chart,
    Facts,
    Heatmap,
    Line,
    Markers,
    Panel,
    Report,
    Section,
    Series,
    Table,
    Text,
)
from utils.reports.downsample import bar_buckets, event_indices, minmax_indices, ohlc_buckets
from utils.reports.format import count, utc

__all__ = ["CSP", "DEFAULT_LIMITS", "Limits", "plotly_js_version", "render_html"]

# The policy of every report page (also sent as a header by the API, with frame-ancestors added).
CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data: blob:; base-uri 'none'; form-action 'none'"
)
UP_COLOR, DOWN_COLOR = "#26a69a", "#ef5350"
DENSE_MARKERS = 150
COLORWAY = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


@dataclass(frozen=True)
class Limits:
    """Most points drawn per series: candles and time bars (buckets), line buckets (two points each),
    markers per series."""

    candles: int = 1000
    line_buckets: int = 2000
    markers: int = 500


DEFAULT_LIMITS = Limits()


@cache
def _packed_plotly_js() -> str:
    """plotly.min.js from the plotly package, gzip-compressed (fixed mtime: the same bytes every time)
    and base64-encoded."""
    source = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    return base64.b64encode(gzip.compress(source.read_bytes(), compresslevel=9, mtime=0)).decode("ascii")


def plotly_js_version() -> str:
    return str(get_plotlyjs_version())


def render_html(report: Report, limits: Limits = DEFAULT_LIMITS) -> str:
    """The report as one HTML page (see the module docstring)."""
    figures: list[tuple[str, str]] = []
    body = [_section(i, section, limits, figures) for i, section in enumerate(report.sections)]
    nav = "".join(f'<a href="#section-{i}">{html.escape(s.title)}</a>' for i, s in enumerate(report.sections))
    warning = (
        f'<div class="warning" role="alert" id="report-warning">{html.escape(report.warning)}</div>'
        if report.warning
        else ""
    )
    generated = f" Generated {utc(report.generated_at, seconds=True)}." if report.generated_at else ""
    footer = (
        f"{html.escape(report.footer)} This page is self-contained: its charts are drawn by plotly.js "
        f"{plotly_js_version()} (MIT licence), embedded in it, and it makes no network request.{generated}"
    )
    scripts = "".join(
        f'<script type="application/json" data-figure="plot-{key}">{payload}</script>'
        for key, payload in figures
    )
    return (
        "<!doctype html>\n"
        f'<html lang="en" data-report="{_attr(report.kind)}" data-subject="{_attr(report.subject)}" '
        'data-rendered="false">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_attr(CSP)}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<link rel="icon" href="data:,">\n'  # no favicon request
        f"<title>{html.escape(report.title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f'<header><h1 id="report-title">{html.escape(report.title)}</h1>'
        f'<p class="subtitle">{html.escape(report.subtitle)}</p>{warning}'
        f'<nav aria-label="Sections">{nav}</nav></header>\n'
        '<div class="error" id="report-error" role="alert" hidden></div>\n'
        f"<main>{''.join(body)}</main>\n<footer>{footer}</footer>\n{scripts}\n"
        f'<script type="application/gzip;base64" id="plotly-gz">{_packed_plotly_js()}</script>\n'
        f"<script>{_BOOT}</script>\n</body>\n</html>\n"
    )


# --- blocks ----------------------------------------------------------------------------------------


def _attr(text: str) -> str:
    return html.escape(text, quote=True)


def _section(index: int, section: Section, limits: Limits, figures: list[tuple[str, str]]) -> str:
    intro = f'<p class="intro">{html.escape(section.intro)}</p>' if section.intro else ""
    blocks = "".join(_block(block, limits, figures) for block in section.blocks)
    return f'<section id="section-{index}"><h2>{html.escape(section.title)}</h2>{intro}{blocks}</section>\n'


def _block(block: Block, limits: Limits, figures: list[tuple[str, str]]) -> str:
    if isinstance(block, Chart):
        figure, notes = _figure(block, limits)
        figures.append((block.key, _json_for_script(figure)))
        all_notes = [n for n in (block.note, *notes) if n]
        caption = "".join(f'<p class="note">{html.escape(n)}</p>' for n in all_notes)
        sampled = "true" if notes else "false"
        return (
            f'<figure class="chart" id="chart-{_attr(block.key)}" data-chart="{_attr(block.key)}" '
            f'data-downsampled="{sampled}"><figcaption>{html.escape(block.title)}</figcaption>'
            f'<div class="plot" id="plot-{_attr(block.key)}" style="height:{int(block.height)}px"></div>'
            f"{caption}</figure>\n"
        )
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Facts):
        items = "".join(
            f"<dt>{html.escape(label)}</dt><dd>{html.escape(value)}</dd>" for label, value in block.items
        )
        return f'<dl class="facts">{items}</dl>\n'
    if isinstance(block, Text):
        return f'<p class="{block.tone}">{html.escape(block.text)}</p>\n'
    raise TypeError(f"not a report block: {block!r}")


def _table(table: Table) -> str:
    head = "".join(
        f'<th scope="col"{" class=num" if c.numeric else ""}'
        f"{f' title={chr(34)}{_attr(c.description)}{chr(34)}' if c.description else ''}>"
        f"{html.escape(c.name)}</th>"
        for c in table.columns
    )
    numeric = [c.numeric for c in table.columns]
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td{' class=num' if numeric[j] else ''}>{html.escape(cell)}</td>" for j, cell in enumerate(row)
        )
        + "</tr>"
        for row in table.rows
    )
    note = f'<p class="note">{html.escape(table.note)}</p>' if table.note else ""
    return (
        f'<div class="table" id="table-{_attr(table.key)}" data-table="{_attr(table.key)}">'
        f"<h3>{html.escape(table.title)}</h3>{note}<div class=scroll><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{rows}</tbody></table></div></div>\n"
    )


def _json_for_script(figure: go.Figure) -> str:
    """The figure's JSON, safe inside a <script> element: no "<" can close it or open a comment."""
    text: str = pio.to_json(figure, validate=False, remove_uids=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# --- charts ----------------------------------------------------------------------------------------


def _figure(chart: Chart, limits: Limits) -> tuple[go.Figure, list[str]]:
    rows = len(chart.panels)
    heights = [p.height for p in chart.panels]
    total = sum(heights) or 1.0
    figure = make_subplots(
        rows=rows,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.04 if rows > 1 else 0.0,
        row_heights=[h / total for h in heights],
    )
    notes: list[str] = []
    sampled = _Sampling()
    for row, panel in enumerate(chart.panels, start=1):
        for series in panel.series:
            for trace in _traces(series, chart, limits, sampled):
                figure.add_trace(trace, row=row, col=1)
        _style_panel(figure, panel, row)
    notes += sampled.notes()
    _style_chart(figure, chart, rows)
    if chart.x_kind == "time" and chart.x_range is None:
        _fit_time_axis(figure, chart)
    return figure, notes


def _fit_time_axis(figure: go.Figure, chart: Chart) -> None:
    """A time axis spanning the data (plotly pads candlesticks by weeks on a long series)."""
    ends = [
        (int(np.min(s.x)), int(np.max(s.x)))
        for panel in chart.panels
        for s in panel.series
        if not isinstance(s, Heatmap) and len(s.x)
    ]
    if not ends:
        return
    lo, hi = min(e[0] for e in ends), max(e[1] for e in ends)
    pad = max((hi - lo) * 0.01, 1.0)
    figure.update_xaxes(range=[_iso(lo - pad), _iso(hi + pad)])


def _iso(ms: float) -> str:
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


class _Sampling:
    """What was downsampled in one chart, for its note."""

    def __init__(self) -> None:
        self.candles: list[tuple[str, int, int, int]] = []
        self.lines: list[tuple[str, int, int]] = []
        self.markers: list[tuple[str, int, int]] = []
        self.bars: list[tuple[str, int, int, str]] = []

    def notes(self) -> list[str]:
        out = []
        if self.candles:
            parts = ", ".join(
                f"{name}: {count(n)} drawn as {count(m)} (each merges up to {count(size)}: first open, "
                "highest high, lowest low, last close; volume summed)"
                for name, n, m, size in self.candles
            )
            out.append(f"Downsampled for the picture. Candles {parts}.")
        if self.lines:
            parts = ", ".join(f"{name}: {count(n)} points drawn as {count(m)}" for name, n, m in self.lines)
            out.append(
                f"Downsampled for the picture: lines keep each stretch's lowest and highest point, so no "
                f"peak or trough is lost ({parts})."
            )
        if self.bars:
            parts = ", ".join(
                f"{name}: {count(n)} bars drawn as {count(m)}, each the "
                f"{'sum' if how == 'sum' else 'largest'} of its stretch"
                for name, n, m, how in self.bars
            )
            out.append(f"Downsampled for the picture ({parts}).")
        if self.markers:
            parts = ", ".join(f"{name}: {count(m)} of {count(n)}" for name, n, m in self.markers)
            out.append(
                f"Too many events to draw one by one: each stretch of time shows its lowest and highest "
                f"marker ({parts}); the tables and the JSON endpoints have every one."
            )
        if out:
            out.append("Zooming in adds no detail; the JSON endpoint has every point.")
        return out


def _x(values: np.ndarray, chart: Chart) -> Any:
    """x values for plotly: times as float ms (exact below 2**53; sent as a typed array), others as is."""
    if chart.x_kind == "time":
        return np.asarray(values, dtype=np.float64)
    if chart.x_kind == "category":
        return [str(v) for v in values]
    return np.asarray(values, dtype=np.float64)


def _traces(series: Series, chart: Chart, limits: Limits, sampled: _Sampling) -> list[Any]:
    ordered = chart.x_kind != "category"
    if isinstance(series, Candles):
        x, o, h, lo, c, size = ohlc_buckets(
            series.x, series.open, series.high, series.low, series.close, limits.candles if ordered else 10**9
        )
        if size > 1:
            sampled.candles.append((series.name, len(series.x), len(x), size))
        return [
            go.Candlestick(
                name=series.name,
                x=_x(x, chart),
                open=np.asarray(o, dtype=np.float64),
                high=np.asarray(h, dtype=np.float64),
                low=np.asarray(lo, dtype=np.float64),
                close=np.asarray(c, dtype=np.float64),
                increasing={"line": {"color": UP_COLOR, "width": 1}, "fillcolor": UP_COLOR},
                decreasing={"line": {"color": DOWN_COLOR, "width": 1}, "fillcolor": DOWN_COLOR},
                showlegend=False,
            )
        ]
    if isinstance(series, Line):
        idx = minmax_indices(series.y, limits.line_buckets) if ordered else np.arange(len(series.y))
        if len(idx) < len(series.y):
            sampled.lines.append((series.name, len(series.y), len(idx)))
        line: dict[str, Any] = {"width": series.width, "dash": series.dash}
        if series.color:
            line["color"] = series.color
        if series.step:
            line["shape"] = "hv"
        return [
            go.Scatter(
                name=series.name,
                x=_x(np.asarray(series.x)[idx], chart),
                y=np.asarray(series.y, dtype=np.float64)[idx],
                mode="lines+markers" if series.markers else "lines",
                line=line,
                fill="tozeroy" if series.fill == "to_zero" else None,
                connectgaps=False,
            )
        ]
    if isinstance(series, Bars):
        return [_bars(series, chart, limits, sampled)]
    if isinstance(series, Markers):
        keep = event_indices(series.x, series.y, limits.markers) if ordered else np.arange(len(series.x))
        if len(keep) < len(series.x):
            sampled.markers.append((series.name, len(series.x), len(keep)))
        dense = len(keep) > DENSE_MARKERS  # smaller and see-through, so the candles stay visible
        marker: dict[str, Any] = {
            "symbol": series.symbol,
            "size": min(series.size, 6.0) if dense else series.size,
            "opacity": 0.7 if dense else 1.0,
            "line": {"width": 0.5 if dense else 1.0},
        }
        if series.color:
            marker["color"] = series.color
            marker["line"]["color"] = "#333333"
        return [
            go.Scatter(
                name=series.name,
                x=_x(np.asarray(series.x)[keep], chart),
                y=np.asarray(series.y, dtype=np.float64)[keep],
                mode="markers",
                marker=marker,
                text=[series.text[int(i)] for i in keep],
                hovertemplate="%{text}<extra>%{fullData.name}</extra>",
            )
        ]
    if isinstance(series, Heatmap):
        z = np.asarray(series.z, dtype=np.float64)
        heat: dict[str, Any] = {"colorscale": "RdBu" if series.diverging else "Viridis"}
        if series.diverging:
            heat["zmid"] = 0.0
        return [
            go.Heatmap(
                name=series.name,
                x=list(series.x),
                y=list(series.y),
                z=[[None if not np.isfinite(v) else float(v) for v in row] for row in z],
                texttemplate=f"%{{z:{series.value_format}}}",
                hovertemplate=f"%{{y}} / %{{x}}: %{{z:{series.value_format}}}<extra></extra>",
                **heat,
            )
        ]
    raise TypeError(f"not a report series: {series!r}")


def _bars(series: Bars, chart: Chart, limits: Limits, sampled: _Sampling) -> Any:
    if series.horizontal:
        return go.Bar(
            name=series.name,
            x=np.asarray(series.y, dtype=np.float64),
            y=[str(v) for v in series.x],
            orientation="h",
            marker={"color": series.color} if series.color else None,
        )
    ordered = chart.x_kind != "category"
    x, y, starts, size = bar_buckets(
        series.x, series.y, limits.candles if ordered else 10**9, series.aggregate
    )
    if size > 1 and series.up is None:
        sampled.bars.append((series.name, len(series.x), len(x), series.aggregate))
    colors: Any = series.color
    if series.up is not None:
        up = np.asarray(series.up, dtype=bool)
        if size > 1:
            up = _merged_direction(series, starts)
        colors = np.where(up, UP_COLOR, DOWN_COLOR).tolist()
    return go.Bar(
        name=series.name,
        x=_x(x, chart),
        y=y,
        marker={"color": colors, "line": {"width": 0}} if colors is not None else None,
        showlegend=False,
    )


def _merged_direction(series: Bars, starts: np.ndarray) -> np.ndarray:
    """Direction of merged bars: a bucket is up when most of its volume was on rising bars."""
    up = np.asarray(series.up, dtype=bool)
    volume = np.nan_to_num(np.asarray(series.y, dtype=np.float64))
    rising = np.add.reduceat(np.where(up, volume, 0.0), starts)
    total = np.add.reduceat(volume, starts)
    return np.asarray(rising * 2 >= total)


def _style_panel(figure: go.Figure, panel: Panel, row: int) -> None:
    axis: dict[str, Any] = {"title": {"text": panel.title, "font": {"size": 12}}, "zeroline": False}
    if panel.y_format:
        axis["tickformat"] = panel.y_format
        axis["hoverformat"] = panel.y_format
    if panel.y_range is not None:
        axis["range"] = list(panel.y_range)
    figure.update_yaxes(row=row, col=1, **axis)
    for level in panel.levels:
        figure.add_hline(
            y=level.y,
            row=row,
            col=1,
            line={"dash": "dot", "width": 1, "color": "#888888"},
            annotation_text=level.label,
            annotation_position="top left",
            annotation_font={"size": 10, "color": "#666666"},
        )


def _style_chart(figure: go.Figure, chart: Chart, rows: int) -> None:
    xaxis: dict[str, Any] = {"rangeslider": {"visible": False}, "showspikes": True, "spikethickness": 1}
    if chart.x_kind == "time":
        xaxis["type"] = "date"
        xaxis["hoverformat"] = "%Y-%m-%d %H:%M UTC"
    elif chart.x_kind == "category":
        xaxis["type"] = "category"
    if chart.x_format:
        xaxis["tickformat"] = chart.x_format
        xaxis["hoverformat"] = chart.x_format
    if chart.x_range is not None:
        xaxis["range"] = list(chart.x_range)
    figure.update_xaxes(**xaxis)
    if chart.x_title:
        figure.update_xaxes(title={"text": chart.x_title, "font": {"size": 12}}, row=rows, col=1)
    if chart.equal_axes:
        figure.update_yaxes(scaleanchor="x", scaleratio=1, constrain="domain")
        figure.update_xaxes(constrain="domain")
    figure.update_layout(
        template=go.layout.Template(),
        colorway=COLORWAY,
        font={"family": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", "size": 12},
        paper_bgcolor="#ffffff",
        plot_bgcolor="#ffffff",
        margin={"l": 64, "r": 24, "t": 36, "b": 40},
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0, "font": {"size": 11}},
        hovermode="closest",
        dragmode="zoom",
        bargap=0.1,
    )
    figure.update_xaxes(gridcolor="#eeeeee", linecolor="#cccccc", showline=True, automargin=True)
    figure.update_yaxes(gridcolor="#eeeeee", linecolor="#cccccc", showline=True, automargin=True)


# --- the page --------------------------------------------------------------------------------------

_CSS = """
:root { color-scheme: light; --ink: #1d2330; --muted: #5b6474; --line: #e3e6eb; --accent: #1f77b4; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
  background: #f6f7f9; }
header, main, footer { max-width: 1280px; margin: 0 auto; padding: 0 20px; }
header { padding-top: 18px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 0 0 8px; }
h3 { font-size: 14px; margin: 0 0 6px; }
.subtitle { color: var(--muted); margin: 0 0 10px; }
nav { display: flex; flex-wrap: wrap; gap: 6px 14px; margin: 8px 0 4px; }
nav a { color: var(--accent); text-decoration: none; font-size: 13px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 16px 18px;
  margin: 14px 0; }
.intro, .plain { margin: 0 0 10px; }
.note { color: var(--muted); font-size: 12.5px; margin: 6px 0; }
.warning, .error { background: #fff4e5; border: 1px solid #f0b35b; color: #6b3d00; padding: 8px 12px;
  border-radius: 6px; margin: 8px 0; font-weight: 600; }
.error { background: #fdecea; border-color: #ef9a9a; color: #7f1d1d; }
figure.chart { margin: 0 0 18px; }
figcaption { font-weight: 600; margin-bottom: 4px; }
.plot { width: 100%; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 3px 16px; margin: 0 0 14px; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.table { margin: 0 0 16px; }
.scroll { max-height: 520px; overflow: auto; border: 1px solid var(--line); border-radius: 6px; }
table { border-collapse: collapse; width: 100%; font-size: 12.5px; }
th, td { padding: 4px 8px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { position: sticky; top: 0; background: #f0f2f5; font-weight: 600; }
th[title] { text-decoration: underline dotted; cursor: help; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
footer { color: var(--muted); font-size: 12px; padding-bottom: 24px; }
@media print { body { background: #fff; } section { break-inside: avoid; } .scroll { max-height: none; } }
"""

# Unpacks the embedded plotly.js (no request: a Blob's stream, not a fetch) and draws every figure.
_BOOT = """
(function () {
  "use strict";
  var root = document.documentElement;
  var CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["select2d", "lasso2d"] };
  function fail(message) {
    root.setAttribute("data-rendered", "failed");
    var box = document.getElementById("report-error");
    box.textContent = "The charts could not be drawn: " + message + " The tables are complete.";
    box.hidden = false;
    console.error(message);
  }
  function bytesOf(text) {
    if (typeof Uint8Array.fromBase64 === "function") { return Uint8Array.fromBase64(text); }
    var raw = atob(text), out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { out[i] = raw.charCodeAt(i); }
    return out;
  }
  async function loadPlotly() {
    if (typeof DecompressionStream === "undefined") {
      throw new Error("this browser cannot unpack the embedded charting library (it needs " +
        "DecompressionStream: Chrome 80, Firefox 113, Safari 16.4 or later).");
    }
    var packed = document.getElementById("plotly-gz").textContent.trim();
    var stream = new Blob([bytesOf(packed)]).stream().pipeThrough(new DecompressionStream("gzip"));
    var code = await new Response(stream).text();
    var script = document.createElement("script");
    script.textContent = code;
    document.head.appendChild(script);
    if (typeof window.Plotly === "undefined") {
      throw new Error("the embedded charting library did not start.");
    }
  }
  async function main() {
    await loadPlotly();
    var timing = { library: performance.now(), first: null, all: null };
    var holders = document.querySelectorAll("script[data-figure]");
    for (var i = 0; i < holders.length; i++) {
      var figure = JSON.parse(holders[i].textContent);
      await window.Plotly.newPlot(document.getElementById(holders[i].getAttribute("data-figure")),
        figure.data, figure.layout, CONFIG);
      if (timing.first === null) { timing.first = performance.now(); }
    }
    timing.all = performance.now();
    window.reportTiming = timing;
    root.setAttribute("data-rendered", "true");
  }
  main().catch(function (error) { fail(String((error && error.message) || error)); });
})();
"""


def figure_json(chart: Chart, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """One chart's plotly figure as JSON data (what the page draws), for tests and tools."""
    figure, _ = _figure(chart, limits)
    data: dict[str, Any] = json.loads(pio.to_json(figure, validate=False))
    return data
