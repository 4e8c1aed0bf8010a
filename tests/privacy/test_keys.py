"""Opening keys: a process reuses the keys it has read while no key has been destroyed since,
and a key destroyed by another process stops opening at once. Each backend's keys database
(SQLite's keys.db, PostgreSQL's main database)."""
import pytest
from sqlalchemy import event

from services.runtime.sealing import KeyStore, open_values, seal


@pytest.fixture
def stores(settings):
    """Two key stores on one database: two processes' views of it."""
    first, second = KeyStore.for_settings(settings), KeyStore.for_settings(settings)
    yield first, second
    first.engine.dispose()
    second.engine.dispose()


def key_reads(store: KeyStore) -> list[str]:
    """The statements reading subject_keys that `store` runs from now on."""
    seen: list[str] = []
    event.listen(store.engine, "before_cursor_execute",
                 lambda _conn, _cursor, statement, *_: seen.append(statement) if
                 "FROM subject_keys" in statement else None)
    return seen


def test_a_key_destroyed_by_another_process_stops_opening_at_once(stores):
    sealer, opener = stores
    kids = ["kid-alice", "kid-bob"]
    keys = sealer.sealing_keys(kids)
    sealed = [seal(b"alice", ["kid-alice"], keys), seal(b"bob", ["kid-bob"], keys)]
    assert open_values(opener, sealed) == [b"alice", b"bob"]
    sealer.destroy(["kid-alice"])
    assert open_values(opener, sealed) == [None, b"bob"]
    assert opener.opening_keys(["kid-alice"]) == {"kid-alice": None}


def test_keys_read_once_are_not_read_again_until_a_key_is_destroyed(stores):
    sealer, opener = stores
    sealer.sealing_keys(["kid-a", "kid-b", "kid-c"])
    reads = key_reads(opener)
    first = opener.opening_keys(["kid-a", "kid-b"])
    assert len(reads) == 1
    assert opener.opening_keys(["kid-a", "kid-b"]) == first and len(reads) == 1
    assert set(opener.opening_keys(["kid-a", "kid-c"])) == {"kid-a", "kid-c"}
    assert len(reads) == 2  # only kid-c was new
    sealer.destroy(["kid-unrelated"])  # any destruction: every key is read again
    assert opener.opening_keys(["kid-a", "kid-b"]) == first and len(reads) == 3
