@echo off
REM ETF benchmark backfill (SPY + 11 sector SPDRs), 20 NYSE sessions.
REM First use creates the environment with uv (installed with pip if missing); later runs reuse it.
REM Extra arguments are passed through, e.g.:  1_run_backfill.bat --days 60 --tickers "XLK,XLV"
setlocal
cd /d "%~dp0"
call "%~dp0_setup.bat" || exit /b 2
uv run etf-backfill --days 20 %*
exit /b %errorlevel%
