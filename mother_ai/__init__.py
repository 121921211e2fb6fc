"""The Mother AI: decisions across agents, trade execution (paper and live), logs and performance."""
