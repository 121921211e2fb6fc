"""Kline CSV parsing in blocks of lines: the same candles and the same first bad line, whatever the
block size, for both layouts."""

from __future__ import annotations

import pytest

from utils.errors import InvalidInput
from utils.market_data.csv_import import parse_klines_csv

HOUR = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01
NOW = T0 + 10_000 * HOUR


def binance_line(i: int, close: float | None = None) -> str:
    price = 100.0 + i if close is None else close
    t = T0 + i * HOUR
    return f"{t},{price},{price + 1},{price - 1},{price},5,{t + HOUR - 1},500,10,2,200,0"


def binance_file(n: int, *, bom: bool = False, trailing: str = "\n\n") -> bytes:
    text = "\n".join(binance_line(i) for i in range(n)) + trailing
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode()


def plain_file(n: int) -> bytes:
    rows = [f"{(T0 + i * HOUR) // 1000},{100 + i},{101 + i},{99 + i},{100 + i},5" for i in range(n)]
    return ("timestamp,open,high,low,close,volume\r\n" + "\r\n".join(rows) + "\r\n").encode()


@pytest.mark.parametrize("data", [binance_file(500), binance_file(500, bom=True), plain_file(500)])
def test_blocks_of_any_size_give_the_same_candles(data: bytes) -> None:
    whole = parse_klines_csv(data, "1h", NOW)
    assert len(whole.rows) == 500 and whole.rows[0, 0] == T0 and whole.rows[-1, 4] == 100 + 499
    for block in (64, 1000, 4096):
        parsed = parse_klines_csv(data, "1h", NOW, block_bytes=block)
        assert parsed.layout == whole.layout and (parsed.rows == whole.rows).all(), block


def _bad(lines: list[str], at: int, line: str) -> bytes:
    lines = list(lines)
    lines[at] = line
    return ("\n".join(lines) + "\n").encode()


GOOD = [binance_line(i) for i in range(300)]
CASES = {
    "a bad value": (_bad(GOOD, 256, binance_line(256, close=-3.0)), 257, "prices must be positive"),
    "too few fields": (_bad(GOOD, 199, "1,2,3"), 200, "expected 12 comma-separated fields, found 3"),
    "a time going back": (_bad(GOOD, 150, binance_line(10)), 151, "not after the previous row"),
    "a blank line inside": (_bad(GOOD, 120, ""), 121, "expected 12 comma-separated fields, found 1"),
    "not UTF-8": (
        b"\n".join(
            [*(line.encode() for line in GOOD[:280]), b"\xff", *(line.encode() for line in GOOD[281:])]
        ),
        281,
        "not UTF-8",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("block", [64, 1000, 4 * 1024 * 1024])
def test_the_first_bad_line_is_the_same_whatever_the_block(case: str, block: int) -> None:
    data, line, reason = CASES[case]
    with pytest.raises(InvalidInput) as refused:
        parse_klines_csv(data, "1h", NOW, block_bytes=block)
    assert refused.value.message.startswith(f"Line {line}: ") and reason in refused.value.message
    assert refused.value.details == {"line": line}


def test_a_file_of_a_header_only_has_no_candles() -> None:
    with pytest.raises(InvalidInput, match="no candle rows"):
        parse_klines_csv(b"timestamp,open,high,low,close,volume\n\n", "1h", NOW)
