@echo off
REM Daily pipeline: ETF OHLC, ETF holdings, trending sectors, stock history, portfolio allocation,
REM as of the last closed NYSE session. A stage whose inputs are missing says which to run first.
REM Extra arguments pass through, e.g.:  3_run_daily_pipeline.bat --stages trending,allocation
setlocal
cd /d "%~dp0"
where uv >nul 2>nul
if errorlevel 1 (
    echo Installing uv ...
    python -m pip install --user uv || goto :fail
    for /f "delims=" %%i in ('python -c "import sysconfig,os;print(sysconfig.get_path('scripts', os.name + '_user'))"') do set "PATH=%%i;%PATH%"
)
uv sync --locked || goto :fail
uv run daily-pipeline %*
exit /b %errorlevel%
:fail
echo Setup failed: see the messages above.
exit /b 2
