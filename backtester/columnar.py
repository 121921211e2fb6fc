"""A stored backtest's trades and equity curve as bytes: each one a Parquet file held in memory.

Why Parquet: it stores columns as they are (no per-row objects to build), packs them small (integers
delta-encoded, floats byte-stream-split, then zstd), and is self-describing: a stored blob opens in
any Parquet reader (``pandas.read_parquet(io.BytesIO(blob))``) without this code. On 200,000 1-minute
bars with 5,500 trades, the curve packs in about 6 ms into 0.7 MB (zlib over the raw arrays, the
previous format: 60 ms, 1.4 MB) and the trades in about 2 ms into 0.25 MB (as a JSON list of dicts:
about 190 ms to build and encode, 1.6 MB). Values round-trip bit for bit.

Each file names its format in the schema metadata (``format``); readers refuse anything else, so a
blob of one kind can never be read as the other. Migration 0008 converted the earlier formats.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from backtester.runner import EXIT_REASONS, TRADE_FIELDS, TradeColumns

TRADES_FORMAT = b"backtest-trades/1"
CURVE_FORMAT = b"backtest-equity/1"
_FORMAT_KEY = b"format"
_INT_FIELDS = ("entry_time", "exit_time", "entry_bar", "exit_bar")
_TEXT_FIELDS = ("exit_reason",)
TRADES_SCHEMA = pa.schema(
    [
        pa.field(
            name,
            pa.int64() if name in _INT_FIELDS else pa.string() if name in _TEXT_FIELDS else pa.float64(),
            nullable=False,
        )
        for name in TRADE_FIELDS
    ],
    metadata={_FORMAT_KEY: TRADES_FORMAT},
)
CURVE_SCHEMA = pa.schema(
    [pa.field("time", pa.int64(), nullable=False), pa.field("equity", pa.float64(), nullable=False)],
    metadata={_FORMAT_KEY: CURVE_FORMAT},
)


def pack_trades(columns: TradeColumns) -> bytes:
    arrays = [_array(getattr(columns, field.name), field.type) for field in TRADES_SCHEMA]
    return _write(pa.Table.from_arrays(arrays, schema=TRADES_SCHEMA))


def unpack_trades(blob: bytes) -> TradeColumns:
    table = _read(blob, TRADES_SCHEMA)
    columns = {name: table.column(name).to_numpy() for name in TRADE_FIELDS}
    unknown = set(columns["exit_reason"].tolist()) - set(EXIT_REASONS)
    if unknown:
        raise ValueError(f"stored trades have unknown exit reasons {sorted(unknown)}")
    return TradeColumns(**columns)


def pack_curve(times: np.ndarray, equity: np.ndarray) -> bytes:
    arrays = [_array(times, pa.int64()), _array(equity, pa.float64())]
    return _write(pa.Table.from_arrays(arrays, schema=CURVE_SCHEMA))


def unpack_curve(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    table = _read(blob, CURVE_SCHEMA)
    return table.column("time").to_numpy(), table.column("equity").to_numpy()


def _array(values: np.ndarray, kind: pa.DataType) -> pa.Array:
    if pa.types.is_string(kind):
        return pa.array(values, type=kind)
    dtype = np.int64 if pa.types.is_int64(kind) else np.float64
    return pa.array(np.ascontiguousarray(values, dtype=dtype), type=kind)


def _write(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(
        table,
        sink,
        compression="zstd",
        use_dictionary=[name for name in table.column_names if name in _TEXT_FIELDS],
        column_encoding=_encodings(table.schema),
        write_statistics=False,  # nothing filters these files by value
    )
    return bytes(sink.getvalue().to_pybytes())


def _encodings(schema: pa.Schema) -> Mapping[str, str]:
    # Times and bar indices grow by small steps (delta-packed to a few bits each); a float's bytes
    # split into streams compress far better than the floats do whole.
    return {
        field.name: "DELTA_BINARY_PACKED" if pa.types.is_int64(field.type) else "BYTE_STREAM_SPLIT"
        for field in schema
        if not pa.types.is_string(field.type)
    }


def _read(blob: bytes, schema: pa.Schema) -> pa.Table:
    table = pq.read_table(pa.BufferReader(blob))
    found = (table.schema.metadata or {}).get(_FORMAT_KEY)
    expected = schema.metadata[_FORMAT_KEY]
    if found != expected:
        raise ValueError(f"not a {expected.decode()} blob (format {found!r})")
    if not table.schema.equals(schema, check_metadata=False):
        raise ValueError(f"{expected.decode()} blob with columns {table.schema} (expected {schema})")
    if any(table.column(name).null_count for name in table.column_names):
        raise ValueError(f"{expected.decode()} blob with missing values")
    return table
