@echo off
REM Shared by the numbered .bat files: makes sure uv is there (installs it with pip if not) and the
REM environment matches uv.lock. Called with "call", so the PATH it extends stays for the caller.
where uv >nul 2>nul
if errorlevel 1 (
    echo Installing uv ...
    python -m pip install --user uv || goto :fail
    for /f "delims=" %%i in ('python -c "import sysconfig,os;print(sysconfig.get_path('scripts', os.name + '_user'))"') do set "PATH=%%i;%PATH%"
)
uv sync --locked || goto :fail
exit /b 0
:fail
echo Setup failed: see the messages above.
exit /b 2
