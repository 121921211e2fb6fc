"""backtests keep their trades and equity curve as columns: each a Parquet file in memory

Before: `trades` was a JSON list of dicts and `equity_blob` zlib over raw int64 open times followed
by float64 equity. After: both are Parquet files, the formats backtester/columnar.py reads
(`backtest-trades/1`, `backtest-equity/1`). Every stored row is converted, every value bit for bit
(JSON floats are shortest round-trip reprs); downgrade converts back the same way.

The codecs are written out here, not imported, so this migration keeps meaning what it meant when
later code changes its formats.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""
from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

TRADE_FIELDS = (
    ('entry_time', pa.int64()),
    ('entry_price', pa.float64()),
    ('exit_time', pa.int64()),
    ('exit_price', pa.float64()),
    ('quantity', pa.float64()),
    ('fees', pa.float64()),
    ('pnl', pa.float64()),
    ('trade_return', pa.float64()),
    ('entry_bar', pa.int64()),
    ('exit_bar', pa.int64()),
    ('exit_reason', pa.string()),
)
TRADES_SCHEMA = pa.schema(
    [pa.field(name, kind, nullable=False) for name, kind in TRADE_FIELDS],
    metadata={b'format': b'backtest-trades/1'},
)
CURVE_SCHEMA = pa.schema(
    [pa.field('time', pa.int64(), nullable=False), pa.field('equity', pa.float64(), nullable=False)],
    metadata={b'format': b'backtest-equity/1'},
)


def _backtests(*columns: sa.ColumnClause[Any]) -> sa.TableClause:
    return sa.table('backtests', sa.column('id', sa.String()), *columns)


def upgrade() -> None:
    with op.batch_alter_table('backtests') as batch:
        batch.add_column(sa.Column('trades_columns', sa.LargeBinary(), nullable=True))
    table = _backtests(
        sa.column('trades', sa.JSON()),
        sa.column('trades_columns', sa.LargeBinary()),
        sa.column('equity_blob', sa.LargeBinary()),
    )
    _convert(table, lambda row: {
        'trades_columns': _trades_to_parquet(row.id, row.trades),
        'equity_blob': _curve_to_parquet(row.equity_blob),
    })
    with op.batch_alter_table('backtests') as batch:
        batch.drop_column('trades')
        batch.alter_column(
            'trades_columns', new_column_name='trades', existing_type=sa.LargeBinary(), nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table('backtests') as batch:
        batch.add_column(sa.Column('trades_json', sa.JSON(), nullable=True))
    table = _backtests(
        sa.column('trades', sa.LargeBinary()),
        sa.column('trades_json', sa.JSON()),
        sa.column('equity_blob', sa.LargeBinary()),
    )
    _convert(table, lambda row: {
        'trades_json': _parquet_to_trades(row.trades),
        'equity_blob': _parquet_to_curve(row.equity_blob),
    })
    with op.batch_alter_table('backtests') as batch:
        batch.drop_column('trades')
        batch.alter_column('trades_json', new_column_name='trades', existing_type=sa.JSON(), nullable=False)


def _convert(table: sa.TableClause, new_values: Any) -> None:
    """Rewrite every row one at a time: a row's curve can be megabytes, so never all rows at once."""
    bind = op.get_bind()
    ids = bind.execute(sa.select(table.c.id).order_by(table.c.id)).scalars().all()
    for backtest_id in ids:
        row = bind.execute(sa.select(table).where(table.c.id == backtest_id)).one()
        bind.execute(table.update().where(table.c.id == backtest_id).values(**new_values(row)))


def _trades_to_parquet(backtest_id: str, trades: list[dict[str, Any]]) -> bytes:
    arrays = []
    for name, kind in TRADE_FIELDS:
        values = [trade[name] for trade in trades]
        if any(value is None for value in values):  # closed trades always have an exit
            raise ValueError(f"backtest {backtest_id}: a stored closed trade has no {name}")
        arrays.append(pa.array(values, type=kind))
    return _parquet(pa.Table.from_arrays(arrays, schema=TRADES_SCHEMA))


def _curve_to_parquet(blob: bytes) -> bytes:
    raw = zlib.decompress(blob)
    n = len(raw) // 16
    times = np.frombuffer(raw[: 8 * n], dtype=np.int64)
    equity = np.frombuffer(raw[8 * n :], dtype=np.float64)
    return _parquet(pa.Table.from_arrays([pa.array(times), pa.array(equity)], schema=CURVE_SCHEMA))


def _parquet(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(
        table,
        sink,
        compression='zstd',
        use_dictionary=['exit_reason'] if 'exit_reason' in table.column_names else False,
        column_encoding={
            field.name: 'DELTA_BINARY_PACKED' if pa.types.is_int64(field.type) else 'BYTE_STREAM_SPLIT'
            for field in table.schema
            if not pa.types.is_string(field.type)
        },
        write_statistics=False,
    )
    return bytes(sink.getvalue().to_pybytes())


def _parquet_to_trades(blob: bytes) -> list[dict[str, Any]]:
    table = pq.read_table(pa.BufferReader(blob))
    trades: list[dict[str, Any]] = table.select([name for name, _ in TRADE_FIELDS]).to_pylist()
    return trades


def _parquet_to_curve(blob: bytes) -> bytes:
    table = pq.read_table(pa.BufferReader(blob))
    times = np.ascontiguousarray(table.column('time').to_numpy(), dtype=np.int64)
    equity = np.ascontiguousarray(table.column('equity').to_numpy(), dtype=np.float64)
    return zlib.compress(times.tobytes() + equity.tobytes(), level=1)
