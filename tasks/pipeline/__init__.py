"""The daily pipeline's analytics: ETF holdings, trending sectors and stocks, allocation, and the
stage bodies. May import ``tasks.core``, ``tasks.sources`` and ``tasks.prices.obtain``."""
