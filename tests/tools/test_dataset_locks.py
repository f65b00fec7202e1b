"""`tools.datasets.locks.KeyedLocks`: one lock per key that serialises holders of the same key, lets
other keys run, is re-entrant, and keeps no entry once nobody holds or waits for a key."""

from __future__ import annotations

import threading
import time

from tools.datasets.locks import KeyedLocks


def test_map_does_not_grow_with_keys_touched() -> None:
    locks = KeyedLocks()
    for i in range(5000):
        with locks.hold(f"dataset-{i}"):
            assert len(locks) == 1
    assert len(locks) == 0


def test_entry_is_removed_after_an_error_in_the_block() -> None:
    locks = KeyedLocks()
    try:
        with locks.hold("k"):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert len(locks) == 0


def test_holders_of_one_key_never_overlap_even_while_entries_come_and_go() -> None:
    """Many threads on one key: at most one inside at a time. Waiters keep the entry alive, so a
    late arrival never gets a fresh lock while another thread still holds the old one."""
    locks = KeyedLocks()
    inside = 0
    most = 0
    guard = threading.Lock()
    start = threading.Barrier(12)

    def worker() -> None:
        nonlocal inside, most
        start.wait()
        for _ in range(20):
            with locks.hold("same"):
                with guard:
                    inside += 1
                    most = max(most, inside)
                time.sleep(0.0005)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=worker) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert most == 1
    assert len(locks) == 0


def test_second_holder_waits_for_the_first() -> None:
    locks = KeyedLocks()
    order: list[str] = []
    held = threading.Event()

    def second() -> None:
        held.wait(5)
        with locks.hold("d"):
            order.append("second")

    t = threading.Thread(target=second)
    t.start()
    with locks.hold("d"):
        held.set()
        time.sleep(0.1)  # the second thread is now waiting on the same entry
        assert len(locks) == 1
        order.append("first")
    t.join(5)
    assert order == ["first", "second"]
    assert len(locks) == 0


def test_other_keys_do_not_wait() -> None:
    locks = KeyedLocks()
    done = threading.Event()

    def other() -> None:
        with locks.hold("b"):
            done.set()

    with locks.hold("a"):
        t = threading.Thread(target=other)
        t.start()
        assert done.wait(5), "a holder of key 'a' blocked key 'b'"
        t.join(5)
    assert len(locks) == 0


def test_reentrant_in_one_thread() -> None:
    locks = KeyedLocks()
    with locks.hold("d"), locks.hold("d"):
        assert len(locks) == 1
    assert len(locks) == 0
