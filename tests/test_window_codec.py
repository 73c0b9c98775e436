"""The window codec (intelligence/scoring.py `WindowCodec`): the flakiness rule checked
against expectations computed by hand and against its definition, its fast paths held byte for
byte against the plain way, and its stored format's version. A change of the rule or of the
format is a change of the codec and of this file."""

from __future__ import annotations

import os
import random

import pytest

from redline.server.intelligence import scoring

W1, W2 = 0.5 ** 0.1, 0.5 ** 0.2  # weights of the 2nd and 3rd newest results


def entry(status, commit="c1", run="r1", outage=False, duration=10):
    return scoring.Entry(status, commit, run, outage, duration)


def evidence(newest_first):
    return scoring.replay(newest_first)[1]


def score(newest_first):
    return scoring.replay(newest_first)[0].score()


# -- the arithmetic ------------------------------------------------------------------------

def test_a_retry_flake_weighs_by_recency():
    window = [entry("flaky", run="r3"), entry("passed", run="r2"), entry("passed", run="r1")]
    assert score(window) == round(1 / (1 + W1 + W2), 4)
    window = [entry("passed", run="r3"), entry("passed", run="r2"), entry("flaky", run="r1")]
    assert score(window) == round(W2 / (1 + W1 + W2), 4)


def test_a_rerun_on_the_same_commit_that_changed_its_mind_is_evidence():
    window = [entry("passed", "c1", "r2"), entry("failed", "c1", "r1")]
    assert evidence(window) == [True, False]
    assert score(window) == round(1 / (1 + W1), 4)
    # another commit: a fix, not a flake
    assert evidence([entry("passed", "c2", "r2"), entry("failed", "c1", "r1")]) == [
        False, False]
    # twice in one run is not a re-run; without a commit there is nothing to compare
    assert evidence([entry("passed", "c1", "r1"), entry("failed", "c1", "r1")]) == [
        False, False]
    assert evidence([entry("passed", None, "r2"), entry("failed", None, "r1")]) == [
        False, False]


def test_an_outage_run_is_never_evidence():
    assert scoring.is_outage(failed=9, executed=10) and not scoring.is_outage(8, 10)
    assert not scoring.is_outage(failed=3, executed=3)  # too small to call an outage
    window = [entry("flaky", outage=True), entry("passed", "c1", "r2"),
              entry("failed", "c1", "r0", outage=True)]
    assert evidence(window) == [False, False, False]


def test_failing_every_time_is_broken_not_flaky():
    stats = scoring.replay([entry("failed", run=f"r{i}") for i in range(3)])[0].stats(0.3)
    assert stats.status == "broken" and stats.flakiness_score == 0.0 and stats.failed_runs == 3


def test_the_window_keeps_the_newest_fifty():
    results = [entry("flaky", run="new", duration=1000)] + [
        entry("passed", run=f"o{i}", duration=10) for i in range(60)]
    stats = scoring.replay(results)[0].stats(0.3)
    assert stats.total_runs == 50 and stats.flaky_runs == 1
    assert stats.avg_duration == int((1000 + 49 * 10) / 50)
    assert stats.flakiness_score == round(1 / sum(0.5 ** (i / 10) for i in range(50)), 4)


def test_a_result_is_judged_against_the_fifty_before_it():
    # a pass on c1, then 50 passes on other commits, then a failure on c1: the pass is 51
    # results back, out of reach; one result fewer in between and it is evidence
    far = [entry("failed", "c1", "late")] + [entry("passed", f"x{i}", f"m{i}")
                                             for i in range(50)] + [entry("passed", "c1", "a")]
    assert evidence(far)[0] is False
    assert evidence(far[:1] + far[2:])[0] is True


def reference_stats(newest_first, threshold):
    """The definition, spelled out over plain lists: the oracle for WindowCodec."""
    flags = []
    for i, result in enumerate(newest_first):
        before = newest_first[i + 1:i + 1 + scoring.WINDOW]
        if result.outage:
            flags.append(False)
        elif result.status == "flaky":
            flags.append(True)
        else:
            opposite = "failed" if result.status == "passed" else "passed"
            flags.append(result.commit is not None and any(
                o.commit == result.commit and o.status == opposite and o.run_id != result.run_id
                and not o.outage for o in before))
    window, flags = newest_first[:scoring.WINDOW], flags[:scoring.WINDOW]
    weights = [0.5 ** (i / 10) for i in range(len(window))]
    value = round(sum(w for w, f in zip(weights, flags) if f) / sum(weights), 4) if window \
        else 0.0
    failed = sum(r.status == "failed" for r in window)
    if not window:
        status = "new"
    elif len(window) >= 2 and failed == len(window):
        status, value = "broken", 0.0
    elif any(flags) and value >= threshold:
        status = "flaky"
    else:
        status = "stable"
    return scoring.CaseStats(
        status=status, flakiness_score=value, total_runs=len(window), flaky_runs=sum(flags),
        failed_runs=failed,
        avg_duration=int(sum(r.duration for r in window) / len(window)) if window else 0,
        last_status=window[0].status if window else None)


def test_the_constant_space_window_agrees_with_the_definition():
    rng = random.Random(7)
    for _ in range(300):
        length = rng.choice([0, 1, 2, 5, 30, 49, 50, 51, 99, 100, 140])
        commits = [f"c{i}" for i in range(rng.randint(1, 8))] + [None]
        # a run's results of one case arrive together: now and then two in a row
        runs = [0]
        for _ in range(length - 1):
            runs.append(runs[-1] + (rng.random() < 0.8))
        results = [entry(rng.choice(["passed", "passed", "failed", "flaky"]),
                         rng.choice(commits), f"r{run}", rng.random() < 0.1,
                         rng.randint(0, 5000)) for run in reversed(runs)]
        window, _flags = scoring.replay(results)
        expected = reference_stats(results, 0.2)
        assert window.stats(0.2) == expected
        # what is stored is all it needs: a window read back continues the same way
        assert scoring.WindowCodec.decode(window.encode()).stats(0.2) == expected
        assert len(window.encode()) <= 1024


def test_the_steady_pass_shortcut_gives_the_bytes_of_the_long_way():
    """Most cases of most runs add one pass that is no evidence to a window without evidence:
    `push_steady_pass` does that in the window's slot of its bucket without decoding it, and
    must leave exactly what `WindowCodec.push` would; any other window, or a pass that would be
    evidence (a failure outside an outage on the same commit), it hands back (None), the
    bucket untouched."""
    rng = random.Random(11)
    steady = declined = quiet_ones = 0
    for _ in range(400):
        window = scoring.WindowCodec()
        mostly_passing = rng.random() < 0.7
        for _ in range(rng.choice([1, 2, 30, 49, 50, 51, 120])):
            outage = rng.random() < 0.1  # an outage's failures leave a pass's score alone
            status = ("failed" if outage and rng.random() < 0.9 else "passed" if mostly_passing
                      else rng.choice(["passed", "failed", "flaky"]))
            window.push(status, scoring.commit_key(rng.choice(["c1", "c2", None])), outage,
                        rng.randint(-5, 2**33))
        commit, duration = scoring.commit_key(rng.choice(["c1", "c3"])), rng.randint(-5, 2**33)
        bucket = bytearray(os.urandom(3 * scoring.SLOT))  # the window in the middle slot
        bucket[scoring.SLOT:2 * scoring.SLOT] = bytes(scoring.SLOT)
        scoring.WindowCodec.put_slot(bucket, 1, window.encode(), 7)
        untouched = bytes(bucket)
        shortcut = scoring.WindowCodec.push_steady_pass(bucket, 1, commit, duration, 1234)
        if shortcut is None:  # a window with evidence, or a pass that would be evidence
            assert bucket == untouched
            declined += 1
            assert window.evidence or window.push("passed", commit, False, duration)
            continue
        steady += 1
        before = window.stats(0.3)
        assert not window.push("passed", commit, False, duration)
        stats = window.stats(0.3)
        quiet = before.last_status == "passed" and stats.failed_runs == before.failed_runs
        assert shortcut == (stats.total_runs, stats.failed_runs, stats.avg_duration,
                            before.status, quiet)
        assert scoring.WindowCodec.slot_window(bucket, 1) == window.encode()
        assert scoring.WindowCodec.slot_figures(bucket, 1) == (stats.total_runs, stats.avg_duration, 1234)
        assert bucket[:scoring.SLOT] == untouched[:scoring.SLOT]  # its neighbours unchanged
        assert bucket[2 * scoring.SLOT:] == untouched[2 * scoring.SLOT:]
        if quiet:  # what a quiet pass does not write stays as it was
            assert (stats.flaky_runs, stats.failed_runs, stats.last_status) == \
                (before.flaky_runs, before.failed_runs, before.last_status)
            quiet_ones += 1
        assert before.flakiness_score == 0.0 and before.status in ("stable", "broken")
        assert stats[:2] == ("stable", 0.0) and stats.last_status == "passed"
    assert steady > 100 and declined > 50 and 50 < quiet_ones < steady
    # a window of outage failures alone is broken; the pass makes it stable
    outages = scoring.WindowCodec()
    for _ in range(2):
        outages.push("failed", scoring.commit_key("c1"), True, 10)
    assert outages.stats(0.3).status == "broken"
    bucket = bytearray(scoring.SLOT)
    scoring.WindowCodec.put_slot(bucket, 0, outages.encode(), 1)
    assert scoring.WindowCodec.push_steady_pass(bucket, 0, scoring.commit_key("c2"), 10, 2)[-2:] == \
        ("broken", False)


def test_a_first_result_gives_the_bytes_and_figures_of_the_long_way():
    """A test's first result (every test of a first import) is written by `first_result`
    without the window object: the same bytes, figures and evidence as pushing it into an
    empty window, for every outcome, in an outage run or not, at every duration and
    threshold; and an empty slot takes neither shortcut."""
    rng = random.Random(12)
    for status in ("passed", "failed", "flaky"):
        for outage in (False, True):
            for duration in (-5, 0, 1, 999, 32_767, 32_768, 40_000, 2**33,
                             *(rng.randint(0, 10**7) for _ in range(20))):
                for threshold in (0.0, 0.3, 1.0):
                    commit = scoring.commit_key(rng.choice(["c1", None]))
                    window = scoring.WindowCodec()
                    evidence = window.push(status, commit, outage, duration)
                    assert scoring.WindowCodec.first_result(status, commit, outage, duration,
                                                threshold) == (window.encode(),
                                                               window.stats(threshold),
                                                               evidence)
    assert scoring.WindowCodec.first_result("flaky", b"abcd", False, 10, 0.3)[1][:2] == ("flaky", 1.0)
    empty = bytearray()
    assert not scoring.WindowCodec.slot_ran(empty, 0)
    assert scoring.WindowCodec.push_steady_pass(empty, 0, b"abcd", 10, 1) is None and empty == b""


def test_a_stored_bucket_starts_with_its_format_version():
    """A bucket's state is the version byte, then its slots: `dump_bucket` and
    `load_bucket` go both ways, an empty bucket is the byte alone, a slot read on its own
    (`slot_range`) is where the codec put it, and a state of another version (or none) is
    refused rather than misread."""
    window = scoring.WindowCodec()
    window.push("flaky", scoring.commit_key("c1"), False, 42)
    slots = bytearray()
    scoring.WindowCodec.put_slot(slots, 0, b"", 0)
    scoring.WindowCodec.put_slot(slots, 1, window.encode(), 99)
    state = scoring.WindowCodec.dump_bucket(slots)
    assert state[:1] == bytes([scoring.WindowCodec.VERSION]) == b"\x01"
    assert scoring.WindowCodec.load_bucket(state) == slots
    assert scoring.WindowCodec.empty_bucket() == b"\x01"
    assert scoring.WindowCodec.load_bucket(scoring.WindowCodec.empty_bucket()) == bytearray()
    offset, length = scoring.WindowCodec.slot_range(1)
    assert state[offset:offset + length] == slots[scoring.SLOT:]
    assert scoring.WindowCodec.slot_figures(state[offset:offset + length], 0) == (1, 42, 99)
    for other in (b"\x02" + bytes(slots), bytes(slots), b""):
        with pytest.raises(scoring.UnknownWindowFormat):
            scoring.WindowCodec.load_bucket(other)
