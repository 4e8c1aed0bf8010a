"""SQLite writers of one process take turns in arrival order (no writer starves the others)."""
import sqlite3
import threading

from sqlalchemy import text

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


def test_a_write_transaction_tries_a_lock_held_by_another_process_again_within_2_ms(tmp_path, monkeypatch):
    """`writing()` on SQLite waits for another connection's write lock (another ingest
    process's) by trying again after LOCK_POLL_S, doubling up to 2 ms, not by SQLite's busy
    handler, which sleeps up to 100 ms a try; the connection's busy_timeout for everything
    else is kept."""
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with writing(engine) as session:
        session.execute(text("CREATE TABLE t (a INTEGER)"))
    holder = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        if len(sleeps) == 3:
            holder.execute("COMMIT")

    monkeypatch.setattr(db, "_sleep", sleep)
    with writing(engine) as session:
        session.execute(text("INSERT INTO t VALUES (1)"))
        busy_timeout = session.execute(text("PRAGMA busy_timeout")).scalar()
    assert sleeps == [db.LOCK_POLL_S, 2 * db.LOCK_POLL_S, 4 * db.LOCK_POLL_S] and db.LOCK_POLL_S <= 0.001
    assert busy_timeout == db.BUSY_TIMEOUT_MS
    assert holder.execute("SELECT a FROM t").fetchall() == [(1,)]
    engine.dispose()
