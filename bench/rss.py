"""Run a command and print the peak resident memory of its largest process (itself or a worker).

    python -m bench.rss -- python -m flows.event_valuation --overwrite
Prints ``peak_rss_mb=<n>`` on stderr as the last line; exits with the command's code.
"""

from __future__ import annotations

import resource
import subprocess
import sys


def main() -> int:
    args = sys.argv[1:]
    if args and args[0] == "--":
        args = args[1:]
    code = subprocess.call(args)
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(f"peak_rss_mb={peak_kb / 1024:.0f}", file=sys.stderr, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
