@echo off
REM Daily pipeline: ETF OHLC, ETF holdings, trending sectors, stock history, portfolio allocation,
REM as of the last closed NYSE session. A stage whose inputs are missing says which to run first.
REM Extra arguments pass through, e.g.:  3_run_daily_pipeline.bat --stages trending,allocation
REM Exit codes: those of the command (0, 1, 2, 75, 130); 3 when setup failed.
setlocal
REM The user's working directory stays theirs (relative paths they type mean what they mean); the
REM data stays with the checkout: its database, Prefect home and download cache, unless already set.
if not defined BACKFILL_PGDATA set "BACKFILL_PGDATA=%~dp0.pgdata"
if not defined BACKFILL_PREFECT_HOME set "BACKFILL_PREFECT_HOME=%~dp0.prefect"
if not defined BACKFILL_CACHE_DIR set "BACKFILL_CACHE_DIR=%~dp0.cache"
call "%~dp0_setup.bat"
if errorlevel 1 exit /b 3
uv run --project "%~dp0." daily-pipeline %*
exit /b %errorlevel%
