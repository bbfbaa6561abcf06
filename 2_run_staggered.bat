@echo off
REM Staggered sector backfill: the 11 sector ETFs one at a time, 5 minutes apart, 20 NYSE sessions,
REM skipping tickers already stored. Ctrl+C is safe: it prints the command that resumes.
REM Extra arguments pass through, e.g.:  2_run_staggered.bat --start-from XLV
setlocal
cd /d "%~dp0"
where uv >nul 2>nul
if errorlevel 1 (
    echo Installing uv ...
    python -m pip install --user uv || goto :fail
    for /f "delims=" %%i in ('python -c "import sysconfig,os;print(sysconfig.get_path('scripts', os.name + '_user'))"') do set "PATH=%%i;%PATH%"
)
uv sync --locked || goto :fail
uv run staggered-backfill --days 20 --delay-minutes 5.0 --skip-existing %*
exit /b %errorlevel%
:fail
echo Setup failed: see the messages above.
exit /b 2
