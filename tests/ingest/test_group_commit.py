"""Group commit in the embedded log: concurrent appends share commits, each durable on return."""
from __future__ import annotations

import json
import sqlite3
import threading
from collections import defaultdict

import pytest

from services.runtime.log import LogUnavailable, Message, TopicPartition
from services.runtime.log.embedded import EmbeddedLog
from services.runtime.settings import Settings

THREADS, APPENDS = 16, 40


@pytest.fixture
def log(tmp_path):
    log = EmbeddedLog(Settings(data_dir=tmp_path, embedded_log_write_timeout_ms=300))
    log.ensure_topics(["t"])
    yield log
    log.close()


def rows(tmp_path) -> list[tuple]:
    """The log's rows as another process sees them (so only what is committed)."""
    with sqlite3.connect(tmp_path / "log.db") as other:
        return other.execute('SELECT "partition", "offset", value FROM log_records ORDER BY 1, 2').fetchall()


def test_concurrent_appends_are_committed_together_each_in_order_and_visible_on_return(log, tmp_path):
    start, unseen = threading.Barrier(THREADS), []

    def appender(n: int) -> None:
        start.wait()
        for i in range(APPENDS):
            message = Message.of(f"key-{n}", {"n": n, "i": i})
            log.append("t", [message])
            if message.value not in {value for *_place, value in rows(tmp_path)}:
                unseen.append(message)  # append() returned before the commit

    threads = [threading.Thread(target=appender, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert unseen == []
    assert log.commits < THREADS * APPENDS  # appends waiting together shared a commit
    by_partition = defaultdict(list)
    for partition, offset, value in rows(tmp_path):
        by_partition[partition].append((offset, value))
    per_key = defaultdict(list)
    for partition, records in by_partition.items():
        assert [o for o, _v in records] == list(range(len(records)))  # no gaps, no repeats
        for _offset, value in records:
            appended = json.loads(value)
            per_key[appended["n"]].append(appended["i"])
    assert {n: per_key[n] for n in range(THREADS)} == {n: list(range(APPENDS)) for n in range(THREADS)}


def test_a_write_the_log_cannot_commit_raises_log_unavailable_and_nothing_is_written(log, tmp_path):
    holder = sqlite3.connect(tmp_path / "log.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(LogUnavailable):
            log.append("t", [Message.of("k", 1)])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert rows(tmp_path) == []
    log.append("t", [Message.of("k", 2)])
    assert [v for *_p, v in rows(tmp_path)] == [b"2"]
    assert sum(log.end_offsets([TopicPartition("t", p) for p in range(4)]).values()) == 1


def test_an_append_after_close_raises_log_unavailable(tmp_path):
    log = EmbeddedLog(Settings(data_dir=tmp_path))
    log.ensure_topics(["t"])
    log.close()
    with pytest.raises(LogUnavailable):
        log.append("t", [Message.of("k", 1)])


def test_appends_from_two_log_objects_on_one_file_number_on_from_each_other(log, tmp_path):
    """As two ingest processes (`serve --workers 2`) do: each writer keeps its partitions'
    next offsets between commits, and must see when the other appended meanwhile."""
    other = EmbeddedLog(Settings(data_dir=tmp_path))
    try:
        for i in range(6):
            (log if i % 2 else other).append("t", [Message.of("same-key", {"i": i})])
    finally:
        other.close()
    assert [(o, json.loads(v)["i"]) for _p, o, v in rows(tmp_path)] == [(i, i) for i in range(6)]


def test_offsets_handed_out_by_a_failed_commit_are_given_again(log, tmp_path):
    log.append("t", [Message.of("k", 1)])
    with pytest.raises(LogUnavailable):
        log.append("t", [Message("k", None)])  # NOT NULL: the insert fails after numbering
    log.append("t", [Message.of("k", 3)])
    assert [(o, v) for _p, o, v in rows(tmp_path)] == [(0, b"1"), (1, b"3")]

