"""tools.inference.runner._prefetch: a test run's images arrive in order, in batches, with read errors kept
in place, whether each image is its own task (object stores) or a batch is one (local files)."""

from __future__ import annotations

import threading

import pytest

from tools.inference.runner import _Item, _prefetch


def _items(n: int, bad: set[int], threads: set[str]) -> list[_Item]:
    def fetcher(i: int) -> object:
        def fetch() -> bytes:
            threads.add(threading.current_thread().name)
            if i in bad:
                raise OSError(f"cannot read {i}")
            return f"img-{i}".encode()

        return fetch

    return [_Item(f"{i}.png", None, fetcher(i)) for i in range(n)]  # type: ignore[arg-type]


@pytest.mark.parametrize("local", [False, True])
def test_batches_in_order_with_errors_in_place(local: bool) -> None:
    threads: set[str] = set()
    items = _items(37, {5, 36}, threads)
    batches = list(_prefetch(items, 16, local=local))
    assert [len(b) for b in batches] == [16, 16, 5]
    flat = [pair for b in batches for pair in b]
    assert [it.name for it, _ in flat] == [f"{i}.png" for i in range(37)]
    for i, (_, data) in enumerate(flat):
        if i in (5, 36):
            assert isinstance(data, OSError) and str(data) == f"cannot read {i}"
        else:
            assert data == f"img-{i}".encode()
    assert all(name.startswith("test-run-fetch") for name in threads)
    if local:
        assert len(threads) == 1  # one reader, a batch per task


def test_nothing_to_fetch() -> None:
    assert list(_prefetch([], 16)) == []
    assert list(_prefetch([], 16, local=True)) == []
