"""HTTP routers under /api: thin layers that validate input, call one service and shape the answer."""
