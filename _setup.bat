@echo off
REM Shared by the numbered .bat files: makes sure uv is there (installed with pip if not, through
REM "python" or the "py" launcher, whichever python.org's installer put on PATH) and that the
REM environment matches uv.lock. Called with "call", so the PATH it extends stays for the caller.
REM Exit code 3 when setup fails (the commands use 0, 1, 2, 75 and 130).
REM A program is there when "<it> --version" runs ("where" is not in every cmd; a missing program is 9009).
uv --version >nul 2>nul
if not errorlevel 1 goto :sync
set "PYTHON="
python --version >nul 2>nul
if not errorlevel 1 set "PYTHON=python"
if defined PYTHON goto :install
py --version >nul 2>nul
if not errorlevel 1 set "PYTHON=py"
if defined PYTHON goto :install
echo Setup failed: neither uv nor Python is on PATH. Install Python from python.org, then run this again.
exit /b 3
:install
echo Installing uv with %PYTHON% ...
%PYTHON% -m pip install --user uv
if errorlevel 1 goto :fail
for /f "delims=" %%i in ('%PYTHON% -c "import sysconfig,os;print(sysconfig.get_path('scripts', os.name + '_user'))"') do set "PATH=%%i;%PATH%"
:sync
uv sync --locked --compile-bytecode --project "%~dp0."
if errorlevel 1 goto :fail
exit /b 0
:fail
echo Setup failed: see the messages above.
exit /b 3
