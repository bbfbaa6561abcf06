@echo off
REM Staggered sector backfill: the 11 sector ETFs one at a time, 5 minutes apart, 20 NYSE sessions,
REM skipping tickers already stored. Ctrl+C is safe: it prints the command that resumes.
REM Extra arguments pass through, e.g.:  2_run_staggered.bat --start-from XLV
setlocal
cd /d "%~dp0"
call "%~dp0_setup.bat" || exit /b 2
uv run staggered-backfill --days 20 --delay-minutes 5.0 --skip-existing %*
exit /b %errorlevel%
