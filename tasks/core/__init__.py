"""The shared ground: errors, values, the database (connections, migrations, SQL files, the one
database-error boundary), the NYSE calendar, tickers, progress display, run records, resume commands
and process helpers. Imports nothing else from ``tasks``."""
