@echo off
REM ETF benchmark backfill (SPY + 11 sector SPDRs), 20 NYSE sessions.
REM First use creates the environment with uv (installed with pip if missing); later runs reuse it.
REM Extra arguments are passed through, e.g.:  1_run_backfill.bat --days 60 --tickers "XLK,XLV"
setlocal
cd /d "%~dp0"
where uv >nul 2>nul
if errorlevel 1 (
    echo Installing uv ...
    python -m pip install --user uv || goto :fail
    for /f "delims=" %%i in ('python -c "import sysconfig,os;print(sysconfig.get_path('scripts', os.name + '_user'))"') do set "PATH=%%i;%PATH%"
)
uv sync --locked || goto :fail
uv run etf-backfill --days 20 %*
exit /b %errorlevel%
:fail
echo Setup failed: see the messages above.
exit /b 2
