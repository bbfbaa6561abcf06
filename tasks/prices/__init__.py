"""Daily bars: plan what is missing, obtain it (database, cache, network), store it, restate
adjusted history, the staggered loop, the coverage report. May import ``tasks.core`` and ``tasks.sources``."""
