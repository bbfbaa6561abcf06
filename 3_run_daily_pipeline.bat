@echo off
REM Daily pipeline: ETF OHLC, ETF holdings, trending sectors, stock history, portfolio allocation,
REM as of the last closed NYSE session. A stage whose inputs are missing says which to run first.
REM Extra arguments pass through, e.g.:  3_run_daily_pipeline.bat --stages trending,allocation
setlocal
cd /d "%~dp0"
call "%~dp0_setup.bat" || exit /b 2
uv run daily-pipeline %*
exit /b %errorlevel%
