@echo off
REM Coverage report: per ticker, stored vs expected NYSE sessions, gaps, last fetch, last error.
REM Exit code 1 when gaps exist. Extra arguments pass through, e.g.:  4_backfill_status.bat --plot coverage.png
REM Exit codes: those of the command (0, 1, 2); 3 when setup failed.
setlocal
REM The user's working directory stays theirs (relative paths they type mean what they mean); the
REM data stays with the checkout: its database, Prefect home and download cache, unless already set.
if not defined BACKFILL_PGDATA set "BACKFILL_PGDATA=%~dp0.pgdata"
if not defined BACKFILL_PREFECT_HOME set "BACKFILL_PREFECT_HOME=%~dp0.prefect"
if not defined BACKFILL_CACHE_DIR set "BACKFILL_CACHE_DIR=%~dp0.cache"
call "%~dp0_setup.bat"
if errorlevel 1 exit /b 3
uv run --project "%~dp0." backfill-status %*
exit /b %errorlevel%
