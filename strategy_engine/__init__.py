"""JSON strategies: the canonical spec, dashboard blocks to spec, spec to signals, and the health check."""
