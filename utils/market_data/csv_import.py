"""Parsing and validating kline CSV files: Binance public-data layout and plain OHLCV with a header.

Two layouts are accepted:
- Binance public data (data.binance.vision): 12 columns, no header, open time in milliseconds
  or (spot files since 2025) microseconds;
- plain: a header `timestamp,open,high,low,close,volume`, where timestamp is epoch seconds,
  milliseconds or microseconds, or a date/time string read as UTC.
A file is accepted whole or not at all: the first bad row is reported with its line number.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from utils.errors import InvalidInput
from utils.intervals import INTERVALS, floor_open_time, interval_ms
from utils.market_data.candles import ohlcv_problems
from utils.symbols import SYMBOL_BODY

PLAIN_HEADER = ("timestamp", "open", "high", "low", "close", "volume")
BLOCK_BYTES = 4 * 1024 * 1024  # parsed at a time: about 40,000 lines
_FILE_NAME = re.compile(
    r"^(?P<symbol>" + SYMBOL_BODY + r")-(?P<interval>" + "|".join(INTERVALS) + r")(?:-.*)?\.csv$"
)


@dataclass(frozen=True, slots=True)
class ParsedCsv:
    rows: np.ndarray  # (n, 6): open_time ms, open, high, low, close, volume; ascending
    layout: str  # "binance" or "plain"


def parse_file_name(name: str) -> tuple[str, str] | None:
    """(symbol, interval) for names like `BTCUSDT-1h.csv` or `BTCUSDT-1h-2024-01.csv`, else None."""
    match = _FILE_NAME.match(name)
    return (match["symbol"], match["interval"]) if match else None


def parse_klines_csv(data: bytes, interval: str, now_ms: int, block_bytes: int = BLOCK_BYTES) -> ParsedCsv:
    """Parse and validate a whole file; raises InvalidInput naming the first bad line.

    Candles that have not closed by `now_ms` (or that claim a time before 1970) are refused:
    a stored candle is always a finished one. The file is read in blocks of whole lines, so the
    memory a parse needs beyond the file and the candles is one block's (a 95 MB file once took
    1.3 GB as one string, one list of lines and a frame of twelve text columns).
    """
    data = data[3:] if data.startswith(b"\xef\xbb\xbf") else data  # a UTF-8 byte order mark
    first_end = data.find(b"\n")
    first = _decode(data[: len(data) if first_end < 0 else first_end], data, 0).rstrip("\r")
    if not first.strip():
        raise InvalidInput("Line 1: the file is empty or starts with a blank line.", code="invalid_csv")
    has_header = not _looks_numeric(first.split(",")[0])
    header: tuple[str, ...] = ()
    if has_header:
        header = tuple(cell.strip().lower() for cell in first.split(","))
        if header[:6] != PLAIN_HEADER and header[:1] != ("open_time",):
            raise InvalidInput(
                f"Line 1: unrecognised header; expected {','.join(PLAIN_HEADER)} "
                "or a header-less Binance kline file.",
                code="invalid_csv",
            )
    layout = "plain" if has_header and header[:6] == PLAIN_HEADER else "binance"
    n_cols = 6 if layout == "plain" else 12
    # Trailing blank lines are harmless; blank lines inside the data are not.
    body_start = (first_end + 1 if first_end >= 0 else len(data)) if has_header else 0
    end = len(data.rstrip(b"\r\n\t "))
    blocks: list[np.ndarray] = []
    line = 1 if has_header else 0  # file lines before the next block
    cursor = body_start
    while cursor < end:
        stop = end if end - cursor <= block_bytes else data.rfind(b"\n", cursor, cursor + block_bytes) + 1
        if stop <= cursor:  # one line longer than a block
            stop = data.find(b"\n", cursor + block_bytes, end) + 1 or end
        lines = _decode(data[cursor:stop], data, cursor).splitlines()
        rows = _parse_block(lines, n_cols, line + 1, interval, layout, now_ms)
        if blocks and rows[0, 0] <= blocks[-1][-1, 0]:
            raise _fail(0, line + 1, "open time is not after the previous row's.")
        blocks.append(rows)
        line += len(lines)
        cursor = stop
    if not blocks:
        raise InvalidInput("The file has no candle rows.", code="invalid_csv")
    return ParsedCsv(np.concatenate(blocks), layout)


def _decode(block: bytes, data: bytes, at: int) -> str:
    try:
        return block.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        line = data[: at + exc.start].count(b"\n") + 1
        raise InvalidInput(
            f"Line {line}: the file is not UTF-8 text.", code="invalid_csv", details={"line": line}
        ) from None


def _parse_block(
    lines: list[str], n_cols: int, first_line: int, interval: str, layout: str, now_ms: int
) -> np.ndarray:
    """Validated (n, 6) rows of the lines starting at file line `first_line`."""
    fields = np.fromiter((text.count(",") + 1 for text in lines), dtype=np.int64, count=len(lines))
    wrong = fields != n_cols
    if wrong.any():
        index = int(np.argmax(wrong))
        number = first_line + index
        raise InvalidInput(
            f"Line {number}: expected {n_cols} comma-separated fields, found {int(fields[index])}.",
            code="invalid_csv",
            details={"line": number},
        )
    frame = pd.read_csv(
        io.StringIO("\n".join(lines)),
        header=None,
        dtype=str,
        names=list(range(n_cols)),
        usecols=range(6),  # Binance's last six columns are never stored
        skip_blank_lines=False,
    )
    return _validate(frame, interval, first_line, layout, now_ms)


def _looks_numeric(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


def _fail(row: int, offset: int, reason: str) -> InvalidInput:
    return InvalidInput(f"Line {row + offset}: {reason}", code="invalid_csv", details={"line": row + offset})


def _validate(frame: pd.DataFrame, interval: str, offset: int, layout: str, now_ms: int) -> np.ndarray:
    if frame.empty:
        raise InvalidInput("The file has no candle rows.", code="invalid_csv")
    missing = frame.iloc[:, :6].isna().any(axis=1).to_numpy()
    if missing.any():
        raise _fail(int(np.argmax(missing)), offset, "a field is empty or the row is too short.")
    times = _parse_times(frame[0], offset, layout)
    # Open + interval must not be after now: the candle has to have closed. (The month's length
    # varies; the shortest, 28 days, is the safe bound here and alignment is checked below.)
    length = interval_ms(interval) if interval != "1M" else 28 * 86_400_000
    out_of_range = (times < 0) | (times > now_ms - length)
    if out_of_range.any():
        raise _fail(
            int(np.argmax(out_of_range)), offset, "open time is before 1970 or the candle has not closed yet."
        )
    values = frame.iloc[:, 1:6].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    for mask, reason in ohlcv_problems(values):
        if mask.any():
            raise _fail(int(np.argmax(mask)), offset, reason)
    if len(times) > 1:
        not_ascending = np.concatenate([[False], np.diff(times) <= 0])
        if not_ascending.any():
            raise _fail(int(np.argmax(not_ascending)), offset, "open time is not after the previous row's.")
    aligned = _aligned(times, interval)
    if not aligned.all():
        raise _fail(int(np.argmax(~aligned)), offset, f"open time is not on a {interval} candle boundary.")
    return np.column_stack([times.astype(np.float64), values])


def _parse_times(column: pd.Series, offset: int, layout: str) -> np.ndarray:
    numeric = pd.to_numeric(column, errors="coerce")
    if layout == "plain" and numeric.isna().all():
        parsed = pd.to_datetime(column, utc=True, errors="coerce", format="mixed")
        bad = parsed.isna().to_numpy()
        if bad.any():
            raise _fail(int(np.argmax(bad)), offset, "timestamp is not a date/time.")
        ms: np.ndarray = parsed.dt.as_unit("ms").astype("int64").to_numpy(dtype=np.int64)
        return ms
    bad = numeric.isna().to_numpy() | (numeric.to_numpy(dtype=np.float64, na_value=np.nan) % 1 != 0)
    if bad.any():
        raise _fail(int(np.argmax(bad)), offset, "open time must be an integer epoch timestamp.")
    values = numeric.to_numpy(dtype=np.float64)
    # Anything beyond int64 (or year ~5000 in microseconds) is not a timestamp; reject it before
    # the cast can wrap it around into a plausible-looking date.
    huge = np.abs(values) >= 1e17
    if huge.any():
        raise _fail(int(np.argmax(huge)), offset, "open time is out of range.")
    raw = numeric.to_numpy(dtype=np.int64)
    # Binance's spot files switched from milliseconds to microseconds in 2025; seconds appear in
    # hand-made files. Magnitudes tell them apart for any date between 1973 and 5138.
    return np.asarray(np.where(raw >= 10**14, raw // 1000, np.where(raw < 10**11, raw * 1000, raw)))


def _aligned(times: np.ndarray, interval: str) -> np.ndarray:
    if interval in ("1M", "1w"):
        return np.array([floor_open_time(int(t), interval) == t for t in times], dtype=bool)
    return np.asarray(times % interval_ms(interval) == 0)
