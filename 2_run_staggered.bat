@echo off
REM Staggered sector backfill: the 11 sector ETFs one at a time, 5 minutes apart, 20 NYSE sessions,
REM skipping tickers already stored. Ctrl+C is safe: it prints the command that resumes.
REM Extra arguments pass through, e.g.:  2_run_staggered.bat --start-from XLV
REM With --resume the interrupted run's own flags are used (no defaults added): 2_run_staggered.bat --resume
REM Exit codes: those of the command (0, 1, 2, 75, 130); 3 when setup failed.
setlocal
REM The user's working directory stays theirs (relative paths they type mean what they mean); the
REM data stays with the checkout: its database, Prefect home and download cache, unless already set.
if not defined BACKFILL_PGDATA set "BACKFILL_PGDATA=%~dp0.pgdata"
if not defined BACKFILL_PREFECT_HOME set "BACKFILL_PREFECT_HOME=%~dp0.prefect"
if not defined BACKFILL_CACHE_DIR set "BACKFILL_CACHE_DIR=%~dp0.cache"
call "%~dp0_setup.bat"
if errorlevel 1 goto setup_failed
set "RESUME="
for %%a in (%*) do if /i "%%~a"=="--resume" set "RESUME=1"
if defined RESUME goto :resume
uv run --project "%~dp0." staggered-backfill --days 20 --delay 5m --skip-existing %*
set "rc=%errorlevel%"
goto end
:resume
uv run --project "%~dp0." staggered-backfill %*
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
