@echo off
REM ETF benchmark backfill (SPY + 11 sector SPDRs), 20 NYSE sessions.
REM First use creates the environment with uv (installed with pip if missing); later runs reuse it.
REM Extra arguments are passed through, e.g.:  1_run_backfill.bat --days 60 --tickers "XLK,XLV"
REM Exit codes: those of the command (0, 1, 2, 75, 130); 3 when setup failed.
setlocal
REM The user's working directory stays theirs (relative paths they type mean what they mean); the
REM data stays with the checkout: its database, Prefect home and download cache, unless already set.
if not defined BACKFILL_PGDATA set "BACKFILL_PGDATA=%~dp0.pgdata"
if not defined BACKFILL_PREFECT_HOME set "BACKFILL_PREFECT_HOME=%~dp0.prefect"
if not defined BACKFILL_CACHE_DIR set "BACKFILL_CACHE_DIR=%~dp0.cache"
call "%~dp0_setup.bat"
if errorlevel 1 goto setup_failed
uv run --project "%~dp0." etf-backfill --days 20 %*
set "rc=%errorlevel%"
goto end
:setup_failed
set "rc=3"
REM Double-clicked in Explorer (started by its full path, in a desktop session), the window would
REM close with the summary or the error in it: wait for a key. Typed in a console, not; a scheduled
REM task that starts this file by its full path sets BACKFILL_NO_PAUSE=1.
:end
if /i "%~0"=="%~f0" if defined SESSIONNAME if not defined BACKFILL_NO_PAUSE pause
exit /b %rc%
