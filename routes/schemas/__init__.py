"""The response bodies several routers share (decisions, orders, portfolio), and the value types every
body uses: epoch-millisecond times and decimal strings."""
