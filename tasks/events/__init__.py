"""Event valuation: CSV import, pending events, ticker groups, metrics, worker processes and FMP
multiples. May import ``tasks.core``, ``tasks.sources`` and ``tasks.prices.obtain``."""
