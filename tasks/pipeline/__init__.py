"""The daily pipeline's analytics: ETF holdings, trending sectors and stocks, allocation, retention,
and the stage bodies. May import ``tasks.core``, ``tasks.sources``, ``tasks.prices`` and
``tasks.jsonl`` (retention drops the day partitions of the JSONL tick tables)."""
