"""A fake Financial Modeling Prep on loopback (plain HTTP; the client takes a base URL).

Serves the two "stable" endpoints the provider calls, with FMP's field names:
``/stable/income-statement?symbol=&period=quarter&limit=`` (newest first) and
``/stable/historical-market-capitalization?symbol=&from=&to=`` (newest first). Unknown symbols get
``[]`` as FMP answers; a wrong key gets 401. Knobs: statements and caps per symbol, 429 after N
requests, or 502 for the next N. Every request is logged (with whether the right key came along).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class FmpRequest:
    at: float
    path: str
    symbol: str
    key_ok: bool


@dataclass
class FakeFmp:
    key: str = "test-key"
    statements: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    caps: dict[str, dict[dt.date, float]] = field(default_factory=dict)
    rate_limit_after: int | None = None
    fail_next: int = 0  # this many requests answered 502 first (transient)
    garbled: set[str] = field(default_factory=set)  # symbols answered 200 with an object FMP never sends
    log: list[FmpRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def __enter__(self) -> FakeFmp:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                status, body = fake.respond(self.path)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/stable"

    def respond(self, target: str) -> tuple[int, Any]:
        url = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        symbol = query.get("symbol", "")
        key_ok = query.get("apikey") == self.key
        with self._lock:
            self.log.append(FmpRequest(time.time(), url.path, symbol, key_ok))
            served = len(self.log)
        with self._lock:
            failing = self.fail_next > 0
            self.fail_next -= failing
        if failing:
            return 502, {"error": "Bad Gateway"}
        if self.rate_limit_after is not None and served > self.rate_limit_after:
            return 429, {"Error Message": "Limit Reach . Please upgrade your plan or visit our documentation for more details"}
        if symbol in self.garbled:
            return 200, {"symbol": symbol, "note": "not the list FMP sends"}
        if not key_ok:
            return 401, {"Error Message": "Invalid API KEY. Feel free to create a Free API Key."}
        if url.path == "/stable/income-statement":
            rows = sorted(self.statements.get(symbol, []), key=lambda r: r["date"], reverse=True)
            return 200, rows[: int(query.get("limit", "5"))]
        if url.path == "/stable/historical-market-capitalization":
            start, end = dt.date.fromisoformat(query["from"]), dt.date.fromisoformat(query["to"])
            days = sorted((d for d in self.caps.get(symbol, {}) if start <= d <= end), reverse=True)
            return 200, [{"symbol": symbol, "date": d.isoformat(), "marketCap": self.caps[symbol][d]} for d in days]
        return 404, {"Error Message": "not found"}


def quarter(symbol: str, period_end: str, filed: str, revenue: float, eps_diluted: float) -> dict[str, Any]:
    """An income-statement row as FMP's stable API spells it (the fields the provider reads, and some others)."""
    end = dt.date.fromisoformat(period_end)
    return {"date": period_end, "symbol": symbol, "reportedCurrency": "USD", "cik": "0000000001", "filingDate": filed,
            "acceptedDate": f"{filed} 16:05:00", "fiscalYear": str(end.year), "period": f"Q{(end.month - 1) // 3 + 1}",
            "revenue": revenue, "netIncome": revenue * 0.1, "eps": eps_diluted * 1.02, "epsDiluted": eps_diluted,
            "weightedAverageShsOut": 1_000_000_000, "weightedAverageShsOutDil": 1_020_000_000}
