"""``python -m flows COMMAND ...``: the ``market-backfill`` command, started as its console script is."""

import sys

from flows.launch import market_backfill

sys.exit(market_backfill())
