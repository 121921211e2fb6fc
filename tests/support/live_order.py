"""A process that places one live order through the app and is meant to die at a crash point while doing it.

Run as ``python -m tests.support.live_order CLIENT_ORDER_ID`` with an install's environment in live mode
(tests/test_crash_consistency.py gives it one pointed at the test's fake Binance) and ``CRASH_POINT`` set.
The app is the one `create_app` builds from that environment, started as a server starts it; the order
goes through its live executor, as an executed decision's order does. No route places an order without a
decision, and a decision's buy depends on the agents' view of the fake's prices at the wall-clock time, so
the order is placed here directly. Exits 0 only if the crash point never fired.
"""

from __future__ import annotations

import sys
from decimal import Decimal

from fastapi.testclient import TestClient

from main import create_app
from mother_ai.trade_executer import OrderRequest
from tests.support.http import ctx_of

if __name__ == "__main__":
    with TestClient(create_app()) as client:
        mother = ctx_of(client).mother
        assert mother is not None, "live trading is not enabled in this environment"
        result = mother.executor.submit(
            OrderRequest("BTCUSDT", "BUY", quantity=Decimal("0.001"), client_order_id=sys.argv[1])
        )
    print(f"the order ended {result.status} and the process did not crash", file=sys.stderr)
    sys.exit(0)
