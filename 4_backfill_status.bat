@echo off
REM Coverage report: per ticker, stored vs expected NYSE sessions, gaps, last fetch, last error.
REM Exit code 1 when gaps exist. Extra arguments pass through, e.g.:  4_backfill_status.bat --plot coverage.png
setlocal
cd /d "%~dp0"
where uv >nul 2>nul
if errorlevel 1 (
    echo Installing uv ...
    python -m pip install --user uv || goto :fail
    for /f "delims=" %%i in ('python -c "import sysconfig,os;print(sysconfig.get_path('scripts', os.name + '_user'))"') do set "PATH=%%i;%PATH%"
)
uv sync --locked || goto :fail
uv run backfill-status %*
exit /b %errorlevel%
:fail
echo Setup failed: see the messages above.
exit /b 2
