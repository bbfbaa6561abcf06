"""The shared ground: errors, values, the database (connections, migrations, SQL files, the one
database-error boundary), the NYSE calendar, tickers, settings, progress display, run records and
process helpers. Imports nothing else from ``tasks``."""
