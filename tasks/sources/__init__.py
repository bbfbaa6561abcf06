"""Where data comes from: Yahoo (the only code that imports yfinance), FMP, the 24 h download cache,
the shared rate budget, per-run spacing, and the one settings object that builds them. May import ``tasks.core`` only."""
