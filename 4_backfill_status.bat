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
if errorlevel 1 goto setup_failed
uv run --project "%~dp0." backfill-status %*
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
