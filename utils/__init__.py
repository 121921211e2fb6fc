"""Floor-1 utilities: settings, logging, errors, intervals, jobs and the exchange client."""
