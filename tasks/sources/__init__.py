"""Where data comes from: Yahoo (the only code that imports yfinance), FMP, the 24 h download cache,
the shared rate budget and per-run spacing. May import ``tasks.core`` only."""
