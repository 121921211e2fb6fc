"""Benchmarks: scripts that print a table of medians and ratios (never imported by runtime code)."""
