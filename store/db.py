"""Engine and session factory; built explicitly by whoever needs them, never at import."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

if TYPE_CHECKING:
    from settings import Settings

SessionFactory = async_sessionmaker[AsyncSession]
T = TypeVar("T")


def make_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    if url.startswith("sqlite"):
        _ensure_sqlite_dir(url)
        engine = create_async_engine(url, connect_args={"timeout": 30})

        # pysqlite's own transaction handling breaks SAVEPOINTs (a RELEASE would commit the
        # whole transaction); let SQLAlchemy emit BEGIN itself. IMMEDIATE takes the write
        # lock up front, so two writers wait for each other instead of failing with BUSY;
        # readers (``readers`` below) begin DEFERRED and never take it.
        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _sqlite_begin(conn):  # type: ignore[no-untyped-def]
            conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get(_BEGIN, 'IMMEDIATE')}")

        return engine
    return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def engine_for(settings: Settings) -> AsyncEngine:
    """The store's engine as a process's settings name it: ``DATABASE_URL``, and on
    PostgreSQL ``DATABASE_POOL_SIZE`` connections kept (as many again while busy)."""
    return make_engine(settings.database_url, pool_size=settings.database_pool_size)


def make_session_factory(engine: AsyncEngine) -> SessionFactory:
    return async_sessionmaker(engine, expire_on_commit=False)


_BEGIN = "sqlite_begin"


def readers(sessions: SessionFactory) -> SessionFactory:
    """Sessions for transactions that only read (reports, a breaker's state). On SQLite
    they begin DEFERRED: a reader in WAL mode takes no lock, so it never holds up a writer
    (the commit of ``sent`` after a 250 waits for whoever holds the one write lock). A
    reader that does write fails at once with ``database is locked`` when another writer
    committed since it began. On PostgreSQL ``sessions`` themselves."""
    engine = sessions.kw["bind"]
    assert isinstance(engine, AsyncEngine)
    if engine.dialect.name != "sqlite":
        return sessions
    return async_sessionmaker(
        engine.execution_options(**{_BEGIN: "DEFERRED"}), expire_on_commit=False
    )


def _ensure_sqlite_dir(url: str) -> None:
    path = url.split("///", 1)[-1]
    if path and path != ":memory:" and not path.startswith(":"):
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def sync_url(url: str) -> str:
    """The same database through a sync driver, for Alembic's offline tools and scripts."""
    return url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg")


def insert_for(session: AsyncSession) -> Any:
    """INSERT with ON CONFLICT, as the session's database writes it."""
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
