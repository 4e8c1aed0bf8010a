"""SQLite writers of one process take turns in arrival order (no writer starves the others)."""
import threading

from services.runtime.db import _WriterQueue
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
