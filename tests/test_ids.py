"""Ids sort in the order they were minted: a run's results by id are in arrival order."""

from __future__ import annotations

import threading

from redline.server.kit import ids


def test_a_batch_of_ids_increases_in_the_order_it_was_minted():
    batch = ids.new_ids("test", 5000)
    assert batch == sorted(batch) and len(set(batch)) == 5000
    assert all(i.startswith("test_") and len(i) == len("test_") + 26 for i in batch)


def test_ids_minted_one_after_another_in_the_same_millisecond_keep_increasing():
    minted = [ids.new_id("test") for _ in range(2000)]  # many share a millisecond
    minted += ids.new_ids("test", 3)
    assert minted == sorted(minted) and len(set(minted)) == len(minted)


def test_a_clock_that_steps_back_does_not_make_ids_go_back(monkeypatch):
    first = ids.new_ids("run", 10)
    real = ids.time.time
    monkeypatch.setattr(ids.time, "time", lambda: real() - 3600)  # an hour back
    later = ids.new_ids("run", 10)
    assert first + later == sorted(first + later)


def test_threads_minting_at_once_never_share_an_id():
    minted: list[list[str]] = []

    def mint():
        minted.append([i for _ in range(200) for i in ids.new_ids("test", 20)])

    threads = [threading.Thread(target=mint) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [i for batch in minted for i in batch]
    assert len(every) == len(set(every)) == 4 * 200 * 20
    for batch in minted:  # each thread's ids increase too
        assert batch == sorted(batch)
