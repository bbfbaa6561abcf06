@echo off
REM Coverage report: per ticker, stored vs expected NYSE sessions, gaps, last fetch, last error.
REM Exit code 1 when gaps exist. Extra arguments pass through, e.g.:  4_backfill_status.bat --plot coverage.png
setlocal
cd /d "%~dp0"
call "%~dp0_setup.bat" || exit /b 2
uv run backfill-status %*
exit /b %errorlevel%
