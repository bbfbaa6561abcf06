"""What an ingestion run is asked to do (read once at the edge, ``flows/jsonl_ingest.py``)."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from tasks.core.processes import platform_start_method
from tasks.jsonl.files import Sources
from tasks.jsonl.split import SPLIT_MB

DB_RETRIES = 3  # the source document's "3 attempts, exponential backoff", after the first try


@dataclass(frozen=True)
class IngestOptions:
    sources: Sources
    concurrency: int = 4
    batch_size: int = 10_000
    dry_run: bool = False
    fail_on_low_coverage: bool = False
    db_retries: int = DB_RETRIES
    follow: bool = False
    poll: float = 5.0
    split_mb: float = SPLIT_MB
    start_method: str = field(default_factory=platform_start_method)  # how loader processes start (spawn: as on Windows)
    host: str = field(default_factory=socket.gethostname)  # the files' host, part of their origin (origins.py)
