"""SQLite writers of one process take turns in arrival order (no writer starves the others),
and wait for another process's write lock by trying again within 2 ms."""
import sqlite3
import threading
from collections.abc import Callable

import pytest
from sqlalchemy import exc, text

from services.runtime import db
from services.runtime.db import _WriterQueue, make_engine, writing
from tests.support import wait_until


def test_writers_get_their_turn_in_arrival_order_and_a_nested_turn_passes():
    queue, order, release = _WriterQueue(), [], threading.Event()

    def writer(name: str) -> None:
        with queue.turn():
            order.append(name)
            if name == "first":
                with queue.turn():  # nested in one thread: no deadlock
                    release.wait()

    threads = []
    for count, name in enumerate(["first", "second", "third", "fourth"]):
        threads.append(threading.Thread(target=writer, args=(name,)))
        threads[-1].start()
        wait_until(lambda: len(order) == 1 and len(queue._waiting) == count, what=f"{name} queued")
    release.set()
    for thread in threads:
        thread.join(timeout=10)
    assert order == ["first", "second", "third", "fourth"]


def held_for(holder: sqlite3.Connection, tries: int) -> tuple[list[float], Callable[[float], None]]:
    """`holder` takes the write lock; the sleep returned records each wait asked for and
    lets the lock go after `tries` of them."""
    holder.execute("BEGIN IMMEDIATE")
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == tries:
            holder.execute("COMMIT")
    return sleeps, sleep


def test_begin_immediate_tries_a_lock_held_elsewhere_again_within_2_ms_until_it_is_free(tmp_path, monkeypatch):
    """Another ingest process's commit holds the write lock: the embedded log's writer tries
    again after 0.2 ms, doubling up to 2 ms (SQLite's own busy handler sleeps up to 100 ms
    between tries), and takes the lock on the first try after the holder lets go."""
    holder, writer = (sqlite3.connect(tmp_path / "lock.db", isolation_level=None) for _ in range(2))
    writer.execute("PRAGMA busy_timeout=0")
    sleeps, sleep = held_for(holder, tries=6)
    monkeypatch.setattr(db, "_sleep", sleep)
    assert db.begin_immediate(writer, timeout_s=60) == 6
    assert writer.in_transaction and sleeps == [0.0002, 0.0004, 0.0008, 0.0016, 0.002, 0.002]
    assert (db.LOCK_POLL_S, db.LOCK_POLL_MAX_S) == (0.0002, 0.002)
    writer.execute("ROLLBACK")
    holder.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        db.begin_immediate(writer, timeout_s=0.05)  # held past the timeout: the caller answers 503
    assert not writer.in_transaction
    # the recording sleep doesn't sleep: those 50 ms were thousands of tries, the waits
    # doubling from 0.2 ms again and then staying at 2 ms (a doubling without that cap
    # overflowed a float after ~1,030 tries, ~2 s of real waiting)
    again = sleeps[6:]
    assert len(again) > 1_100 and again[:4] == [0.0002, 0.0004, 0.0008, 0.0016] and set(again[4:]) == {0.002}


def test_a_write_transaction_tries_a_lock_held_by_another_process_again_within_2_ms(tmp_path, monkeypatch):
    """`writing()` on SQLite waits for another connection's write lock (another ingest
    process's) by trying again after LOCK_POLL_S, doubling up to 2 ms, not by SQLite's busy
    handler, which sleeps up to 100 ms a try; the connection's busy_timeout for everything
    else is kept."""
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with writing(engine) as session:
        session.execute(text("CREATE TABLE t (a INTEGER)"))
    holder = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None, check_same_thread=False)
    sleeps, sleep = held_for(holder, tries=3)
    monkeypatch.setattr(db, "_sleep", sleep)
    with writing(engine) as session:
        session.execute(text("INSERT INTO t VALUES (1)"))
        busy_timeout = session.execute(text("PRAGMA busy_timeout")).scalar()
    assert sleeps == [db.LOCK_POLL_S, 2 * db.LOCK_POLL_S, 4 * db.LOCK_POLL_S] and db.LOCK_POLL_S <= 0.001
    assert busy_timeout == db.BUSY_TIMEOUT_MS
    assert holder.execute("SELECT a FROM t").fetchall() == [(1,)]
    engine.dispose()


def test_a_lock_held_past_the_timeout_raises_sqlalchemys_operational_error(tmp_path, monkeypatch):
    """As before the prompt waits: callers turn SQLAlchemy's OperationalError into a 503."""
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with engine.begin() as connection:  # a connection in the pool, so the next begin is the begin
        connection.execute(text("CREATE TABLE t (a INTEGER)"))
    holder = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 20)
    try:
        with pytest.raises(exc.OperationalError, match="locked"), engine.begin():
            pass
    finally:
        holder.execute("ROLLBACK")
        engine.dispose()
