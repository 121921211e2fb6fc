"""Strategy optimisation: the statistics and walk-forward windows every optimisation result carries."""
