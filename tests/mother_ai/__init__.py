"""Tests for mother_ai: trade execution (paper and live), the kill switch and the trade logs."""
