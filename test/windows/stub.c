/* A stand-in for uv.exe, python.exe or py.exe under wine, for test/test_windows_bat.py: appends
 * one line per call to %STUB_LOG% (its own name, the working directory, %BACKFILL_PGDATA%, then each
 * argument as the C runtime parsed it, tab-separated) and exits with the code the test chose:
 *   uv.exe:     %STUB_UV_SYNC_EXIT% for "uv sync ...", %STUB_EXIT% for anything else;
 *   python/py:  "-c ..." prints %STUB_SCRIPTS% (where pip would have put uv.exe); otherwise %STUB_PIP_EXIT%;
 *   "--version" (how the .bat files probe for a program): exit 0, not logged.
 * A batch file cannot stand in: cmd does not come back from a .bat called without "call". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>
#include <windows.h>

static int code_from(const wchar_t *name) {
    const wchar_t *value = _wgetenv(name);
    return value ? _wtoi(value) : 0;
}

int wmain(int argc, wchar_t **argv) {
    wchar_t self[MAX_PATH], cwd[MAX_PATH];
    GetModuleFileNameW(NULL, self, MAX_PATH);
    const wchar_t *base = wcsrchr(self, L'\\') ? wcsrchr(self, L'\\') + 1 : self;
    GetCurrentDirectoryW(MAX_PATH, cwd);
    if (argc == 2 && wcscmp(argv[1], L"--version") == 0) return 0;
    const wchar_t *log = _wgetenv(L"STUB_LOG");
    if (log) {
        FILE *out = _wfopen(log, L"a, ccs=UTF-8");
        if (out) {
            const wchar_t *pgdata = _wgetenv(L"BACKFILL_PGDATA");
            fwprintf(out, L"%ls\t%ls\t%ls", base, cwd, pgdata ? pgdata : L"");
            for (int i = 1; i < argc; i++) fwprintf(out, L"\t%ls", argv[i]);
            fwprintf(out, L"\n");
            fclose(out);
        }
    }
    if (_wcsnicmp(base, L"uv", 2) == 0)
        return (argc > 1 && wcscmp(argv[1], L"sync") == 0) ? code_from(L"STUB_UV_SYNC_EXIT") : code_from(L"STUB_EXIT");
    if (argc > 1 && wcscmp(argv[1], L"-c") == 0) {
        const wchar_t *scripts = _wgetenv(L"STUB_SCRIPTS");
        wprintf(L"%ls\n", scripts ? scripts : L"");
        return 0;
    }
    return code_from(L"STUB_PIP_EXIT");
}
