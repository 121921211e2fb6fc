"""What a report shows, free of any plotting library: a ``Report`` of ``Section``s, each a run of blocks
(``Chart``, ``Table``, ``Facts``, ``Text``); a chart is a stack of ``Panel``s over one shared x axis, each
panel a few series (``Candles``, ``Line``, ``Bars``, ``Markers``, ``Heatmap``).

Assemblers (``backtester.report``, ``mother_ai.replay_report``, ``agents.model_report``) build these from
stored results; ``utils.reports.render`` is the one module that turns them into a page and the one that
knows the plotting library. Series carry every point they have: the renderer downsamples for the picture
(``utils.reports.downsample``, extremes kept) and says so on the page.

Times on a ``"time"`` x axis are epoch milliseconds (UTC), as everywhere in the API. Table cells are text
the assembler formatted (it knows the units); the renderer only escapes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = [
    "Bars",
    "Block",
    "Candles",
    "Chart",
    "Column",
    "Facts",
    "Heatmap",
    "Level",
    "Line",
    "MarkerSymbol",
    "Markers",
    "Panel",
    "Report",
    "Section",
    "Series",
    "Table",
    "Text",
    "XKind",
    "drawdown_panel",
]

XKind = Literal["time", "number", "category"]
MarkerSymbol = Literal["triangle-up", "triangle-down", "circle", "x", "diamond", "square"]


@dataclass(frozen=True, eq=False)
class Candles:
    """OHLC candlesticks; ``x`` is each candle's open time."""

    name: str
    x: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray


@dataclass(frozen=True, eq=False)
class Line:
    """A line through (x, y); NaN breaks it. ``fill="to_zero"`` shades down (or up) to y = 0;
    ``step`` holds each value until the next x."""

    name: str
    x: np.ndarray
    y: np.ndarray
    color: str | None = None
    dash: Literal["solid", "dot", "dash"] = "solid"
    width: float = 1.5
    fill: Literal["none", "to_zero"] = "none"
    step: bool = False
    markers: bool = False  # a dot on every point (short series: calibration bins, folds)


@dataclass(frozen=True, eq=False)
class Bars:
    """Vertical bars; ``up`` (optional, per bar) colours each one as a rising or a falling candle.

    Downsampled by ``aggregate``: a bucket's bars summed (volume: the merged candle's volume) or the
    largest kept."""

    name: str
    x: np.ndarray
    y: np.ndarray
    color: str | None = None
    up: np.ndarray | None = None
    aggregate: Literal["sum", "max"] = "sum"
    horizontal: bool = False  # y is the category axis (x the value): feature importances


@dataclass(frozen=True, eq=False)
class Markers:
    """Events at (x, y), such as entries and exits; ``text`` is each one's hover text."""

    name: str
    x: np.ndarray
    y: np.ndarray
    text: tuple[str, ...]
    symbol: MarkerSymbol = "circle"
    color: str | None = None
    size: float = 9.0


@dataclass(frozen=True, eq=False)
class Heatmap:
    """z[i][j] at (x[j], y[i]); ``diverging`` centres the colour scale on 0."""

    name: str
    x: tuple[str, ...]
    y: tuple[str, ...]
    z: np.ndarray
    diverging: bool = False
    value_format: str = ".3g"


Series = Candles | Line | Bars | Markers | Heatmap


@dataclass(frozen=True)
class Level:
    """A horizontal reference line across a panel (RSI 30 and 70, P = 0.5)."""

    y: float
    label: str = ""


@dataclass(frozen=True)
class Panel:
    """One y axis of a chart. ``height`` is relative to the chart's other panels; ``y_format`` is a d3
    format (``".1%"``, ``",.2f"``)."""

    series: tuple[Series, ...]
    title: str = ""
    height: float = 1.0
    y_format: str | None = None
    levels: tuple[Level, ...] = ()
    y_range: tuple[float, float] | None = None


@dataclass(frozen=True)
class Chart:
    """Panels stacked over one x axis. ``key`` is the chart's id on the page (stable: tests and
    dashboards find charts by it)."""

    key: str
    title: str
    panels: tuple[Panel, ...]
    x_kind: XKind = "time"
    x_title: str = ""
    x_format: str | None = None
    x_range: tuple[float, float] | None = None
    height: int = 420
    note: str = ""
    equal_axes: bool = False  # calibration: one unit is as long on x as on y


@dataclass(frozen=True)
class Column:
    name: str
    numeric: bool = False  # right-aligned
    description: str = ""  # shown as the header's tooltip


@dataclass(frozen=True)
class Table:
    key: str
    title: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[str, ...], ...]
    note: str = ""


@dataclass(frozen=True)
class Facts:
    """Label/value pairs: what the result is (symbol, range, data source, parameters)."""

    items: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Text:
    text: str
    tone: Literal["plain", "note", "warning"] = "plain"


Block = Chart | Table | Facts | Text


@dataclass(frozen=True)
class Section:
    title: str
    blocks: tuple[Block, ...]
    intro: str = ""


@dataclass(frozen=True)
class Report:
    """One page. ``kind`` (backtest, replay, model) and ``subject`` (the result's id) are written on the
    page's root element; ``warning`` is a banner above everything (sample data)."""

    kind: str
    subject: str
    title: str
    subtitle: str
    sections: tuple[Section, ...]
    warning: str | None = None
    footer: str = ""
    generated_at: int | None = None  # epoch ms

    def __post_init__(self) -> None:
        keys = [b.key for s in self.sections for b in s.blocks if isinstance(b, Chart | Table)]
        if len(keys) != len(set(keys)):
            raise ValueError(f"chart and table keys must be unique in a report: {keys}")


def drawdown_panel(times: np.ndarray, drawdown: np.ndarray, name: str = "drawdown") -> Panel:
    """The panel under an equity curve: the drawdown (a fraction below the running peak) filled down from
    zero, the same in every report."""
    return Panel(
        (Line(name, times, -drawdown, color="#c62828", fill="to_zero", width=1.0),),
        "drawdown",
        1.0,
        y_format=".1%",
    )
