"""Flakiness, as arithmetic on a test case's recent results (pure functions, no database).

The window: a case's newest 50 results that ran (skipped ones say nothing), newest first. A
result is **flaky evidence** when it

- has status `flaky` (failed, then passed on a retry in the same run), or
- is a pass or a fail on the same commit as one of the case's 50 results before it, from
  another run, with the opposite outcome (a re-run that changed its mind),

unless it comes from an **outage run**: one where over 80% of at least 10 executed tests
failed at once (an infrastructure failure says nothing about one test). Whether a result is
evidence is decided when it arrives, against the results before it, and never changes.

    flakinessScore = sum(w_i * evidence_i) / sum(w_i),   w_i = 0.5 ** (i / 10)

with i = 0 the newest result: the weight of a result halves every 10 results. `totalRuns` and
`flakyRuns` are plain counts over the same window. A case that failed every time over the
window (at least twice) is `broken`, not flaky; one at or above the project's threshold is
`flaky`; one with no results yet is `new`; anything else `stable`.

`WindowCodec` keeps the window in constant space, so a run's completion updates each of its
cases in a few microseconds whatever the history: one bit per result and outcome, a 4-byte
hash of each result's commit (to find a same-commit result) and its duration in 2 bytes
(`duration_code`), 341 bytes for a full window. A run's results
of one case arrive together, so the results of the same run are always the newest ones in the
window when the next of them arrives. `replay` builds a window from a list of results; the
incremental path and a recomputation from stored results give byte-identical state.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import NamedTuple

WINDOW = 50
HALF_LIFE = 10
OUTAGE_SHARE = 0.8
OUTAGE_MIN_TESTS = 10

WEIGHTS = tuple(0.5 ** (i / HALF_LIFE) for i in range(WINDOW))
# sum(WEIGHTS[:n]) summed in index order, as the score's numerator is
_WEIGHT_SUMS = tuple(sum(WEIGHTS[:n]) for n in range(WINDOW + 1))
_FULL = (1 << WINDOW) - 1
# Bytes per result in each packed column. Every run rewrites the window of each of its cases:
# the fewer bytes, the fewer pages a run writes (8-byte keys and 4-byte durations made a row
# twice as long, and its write a quarter slower on SQLite).
_COMMIT, _DURATION = 4, 2
_NO_COMMIT = bytes(_COMMIT)
_HEADER = struct.Struct("<BQQQQQ")  # count, failed, passed, outage, evidence, duration sum
_HEADER_SIZE = _HEADER.size
# (the steady path's)
_unpack_header, _pack_header_into = _HEADER.unpack_from, _HEADER.pack_into
_EXACT_DURATIONS = 0x8000  # durations below it (ms) are kept exactly; above, in steps of
_DURATION_STEP_BITS = 10  # 1,024 ms, up to about 9.3 hours


# A case's window lives in a slot of its bucket (`window_buckets`: the cases of one test file
# together, migration 0012): the window, zero-padded to its full size, then the time of the
# case's last result in microseconds since the epoch (0: none). A run rewrites a few buckets,
# not a row per case. A case gets its slot when it is created (migration 0013): a bucket's
# slots end after the last slot written, and a slot past their end holds an empty window.
# A bucket's stored state starts with the version of this layout (`WindowCodec.VERSION`,
# migration 0016), then its slots.
FULL_WINDOW = _HEADER_SIZE + (_COMMIT + _DURATION) * WINDOW  # 341 bytes
SLOT = FULL_WINDOW + 8
_LAST_RUN = struct.Struct("<q")
_PADDING = memoryview(bytes(FULL_WINDOW))  # (sliced without a copy)
BUCKET_SLOTS = 256  # a file with more cases takes further buckets


def duration_code(duration) -> int:
    """A duration (ms) as the window keeps it in 2 bytes: exact below 32.768 s, to the
    nearest 1.024 s above (a long test's average is read in seconds)."""
    duration = int(duration)
    if duration < _EXACT_DURATIONS:
        return max(0, duration)
    steps = (duration + (1 << _DURATION_STEP_BITS - 1)) >> _DURATION_STEP_BITS
    return _EXACT_DURATIONS | min(steps, _EXACT_DURATIONS - 1)


def code_duration(code: int) -> int:
    """The milliseconds a `duration_code` stands for."""
    if code < _EXACT_DURATIONS:
        return code
    return (code & (_EXACT_DURATIONS - 1)) << _DURATION_STEP_BITS


def is_outage(failed: int, executed: int) -> bool:
    return executed >= OUTAGE_MIN_TESTS and failed > OUTAGE_SHARE * executed


def commit_key(commit: str | None) -> bytes:
    """4 bytes that stand for a commit in the window (a run's results share one): the first
    bytes of its 8-byte BLAKE2b hash, the key windows kept before migration 0010. A result
    takes another commit's result in its window for a re-run with a chance of at most 49 in
    2**32 (1 in 88 million)."""
    if not commit:
        return _NO_COMMIT
    return hashlib.blake2b(commit.encode(), digest_size=8).digest()[:_COMMIT]


class CaseStats(NamedTuple):
    status: str
    flakiness_score: float
    total_runs: int
    flaky_runs: int
    failed_runs: int
    avg_duration: int
    last_status: str | None


class FirstResult(NamedTuple):
    """What `WindowCodec.first_result` gives: the window's bytes, its figures, and whether the
    result is flaky evidence."""

    window: bytes
    stats: CaseStats
    evidence: bool


class UnknownWindowFormat(ValueError):
    """A bucket stored in a version of the window format this code does not read."""


class WindowCodec:
    """The newest `WINDOW` results of one case, and the one owner of their stored format.

    An instance is one decoded window: bit i of each mask is the i-th newest result;
    `commits` and `durations` hold the results' commit keys and durations newest first.
    `push` adds a result and decides whether it is flaky evidence; `stats` gives the figures
    and the status. The static methods work on a bucket's slots in place (`load_bucket` gives
    them from the stored state, `dump_bucket` the state to store): `push_steady_pass` and
    `first_result` are the fast paths most results of most runs take, held byte for byte
    against `push` by tests. A change of the flakiness rule or of the format is a change of
    this class (and of `VERSION`, with the reading of the older versions in `load_bucket`)
    and of its test, tests/test_window_codec.py.
    """

    VERSION = 1
    _VERSION_BYTE = bytes([VERSION])
    HEADER = len(_VERSION_BYTE)  # bytes of a stored state before its first slot

    __slots__ = (
        "commits",
        "count",
        "duration_sum",
        "durations",
        "evidence",
        "failed",
        "outage",
        "passed",
    )

    def __init__(self) -> None:
        self.count = self.failed = self.passed = self.outage = self.evidence = 0
        self.duration_sum = 0
        self.commits = self.durations = b""

    # -- one window ----------------------------------------------------------------------

    @classmethod
    def decode(cls, data: bytes | None) -> WindowCodec:
        window = cls()
        if data:
            (window.count, window.failed, window.passed, window.outage, window.evidence,
             window.duration_sum) = _HEADER.unpack_from(data)
            split = _HEADER.size + _COMMIT * window.count
            window.commits = data[_HEADER.size:split]
            window.durations = data[split:]
        return window

    def encode(self) -> bytes:
        return (_HEADER.pack(self.count, self.failed, self.passed, self.outage, self.evidence,
                             self.duration_sum) + self.commits + self.durations)

    def push(self, status: str, commit: bytes, outage: bool, duration: int,
             same_run: int = 0) -> bool:
        """Add the newest result (`passed`, `failed` or `flaky`; `commit` from `commit_key`;
        `same_run` the number of newest results in the window from the same run); answers
        whether it is flaky evidence."""
        if outage:
            is_evidence = False
        elif status == "flaky":
            is_evidence = True
        else:
            opposite = self.passed if status == "failed" else self.failed
            # (no opposite outcome outside outages in the window, the usual case: no search)
            is_evidence = bool(commit != _NO_COMMIT and opposite & ~self.outage
                               and self._changed_mind(opposite, commit, same_run))
        code = duration_code(duration)
        if self.count == WINDOW:  # the oldest result leaves
            self.duration_sum -= code_duration(
                int.from_bytes(self.durations[-_DURATION:], "little"))
            self.commits = self.commits[:-_COMMIT]
            self.durations = self.durations[:-_DURATION]
        else:
            self.count += 1
        self.failed = ((self.failed << 1) | (status == "failed")) & _FULL
        self.passed = ((self.passed << 1) | (status == "passed")) & _FULL
        self.outage = ((self.outage << 1) | outage) & _FULL
        self.evidence = ((self.evidence << 1) | is_evidence) & _FULL
        self.duration_sum += code_duration(code)
        self.commits = commit + self.commits
        self.durations = code.to_bytes(_DURATION, "little") + self.durations
        return is_evidence

    def _changed_mind(self, opposite: int, commit: bytes, same_run: int) -> bool:
        """An earlier result on `commit`, with its bit set in `opposite` (the opposite
        outcome), not from an outage run, and older than the `same_run` newest (another run)."""
        candidates = (opposite & ~self.outage) >> same_run << same_run
        return bool(candidates) and _commit_among(self.commits, commit, candidates)

    def score(self) -> float:
        if not self.count:
            return 0.0
        total, bits, index = 0, self.evidence, 0
        while bits:
            if bits & 1:
                total += WEIGHTS[index]
            bits >>= 1
            index += 1
        return round(total / _WEIGHT_SUMS[self.count], 4)

    def status_without_evidence(self) -> str | None:
        """The status of a window without evidence, whatever the threshold: `broken` when it
        failed every time (at least twice), else `stable` (also for an empty one: the status
        a case is created with). None for a window with evidence."""
        if self.evidence:
            return None
        count = self.count
        return "broken" if count >= 2 and self.failed.bit_count() == count else "stable"

    def newest_status(self) -> str | None:
        if not self.count:
            return None
        return "failed" if self.failed & 1 else "passed" if self.passed & 1 else "flaky"

    def stats(self, threshold: float) -> CaseStats:
        count, evidence = self.count, self.evidence
        if not count:
            return CaseStats("new", 0.0, 0, 0, 0, 0, None)
        value = self.score() if evidence else 0.0
        failed = self.failed.bit_count()
        if count >= 2 and failed == count:
            status, value = "broken", 0.0
        elif evidence and value >= threshold:
            status = "flaky"
        else:
            status = "stable"
        # (positional: this runs for every case of every run)
        return CaseStats(status, value, count, evidence.bit_count(), failed,
                         int(self.duration_sum / count), self.newest_status())

    # -- a bucket's stored state ---------------------------------------------------------

    @classmethod
    def empty_bucket(cls) -> bytes:
        """The stored state of a bucket with no window written yet."""
        return cls._VERSION_BYTE

    @classmethod
    def load_bucket(cls, state: bytes) -> bytearray:
        """A bucket's slots from its stored state, to read and change in place. (Migration
        0016 gave every stored bucket its version byte: the code reads one layout, and the
        reads that cut a slot out in SQL one offset, rather than telling an unversioned state
        from a versioned one by its length everywhere it is read.)"""
        cls.check_version(state[:1])
        return bytearray(memoryview(state)[cls.HEADER:])

    @classmethod
    def dump_bucket(cls, slots: bytearray) -> bytes:
        """The state to store for a bucket's slots (`load_bucket`'s)."""
        return cls._VERSION_BYTE + slots

    @classmethod
    def check_version(cls, version: bytes) -> None:
        if version != cls._VERSION_BYTE:
            raise UnknownWindowFormat(
                f"window bucket of format version {version.hex() or 'none'}: "
                f"this code reads version {cls.VERSION}")

    @classmethod
    def slot_range(cls, slot: int) -> tuple[int, int]:
        """(offset, length) of `slot` in a bucket's stored state (for a read of one slot)."""
        return cls.HEADER + slot * SLOT, SLOT

    # -- a slot of a bucket's slots (`load_bucket`) ----------------------------------------

    @staticmethod
    def slot_window(bucket, slot: int) -> bytes:
        """The window kept in `slot` of a bucket's slots, unpadded (its count is its first
        byte; b'' for an empty one)."""
        start = slot * SLOT
        if start >= len(bucket):
            return b""
        return bytes(bucket[start:start + _HEADER_SIZE + (_COMMIT + _DURATION) * bucket[start]])

    @staticmethod
    def slot_ran(bucket, slot: int) -> bool:
        """Whether the window in `slot` holds a result (its count, the slot's first byte)."""
        start = slot * SLOT
        return start < len(bucket) and bucket[start] > 0

    @staticmethod
    def put_slot(bucket: bytearray, slot: int, window: bytes, last_run_micros: int) -> None:
        """Write a window and its last run time into `slot`, the slots growing to hold it (a
        window only grows: the padding after it stays zero)."""
        start = slot * SLOT
        if len(bucket) == start:  # the slot after the last: a first import fills buckets so
            bucket += window
            bucket += _PADDING[len(window):]
            bucket += _LAST_RUN.pack(last_run_micros)
            return
        if len(bucket) < start + SLOT:
            bucket.extend(bytes(start + SLOT - len(bucket)))
        bucket[start:start + len(window)] = window
        _LAST_RUN.pack_into(bucket, start + FULL_WINDOW, last_run_micros)

    @staticmethod
    def clear_slot(bucket: bytearray, slot: int) -> None:
        """Empty the window in `slot` (and its last run), for a window to be written anew
        that may be shorter than the one there."""
        start = slot * SLOT
        if start < len(bucket):
            end = min(len(bucket), start + SLOT)
            bucket[start:end] = bytes(end - start)

    @staticmethod
    def slot_figures(bucket, slot: int) -> tuple[int, int, int]:
        """(total runs, average duration, last run in microseconds since the epoch or 0) of
        the window in `slot`, read from its header alone."""
        start = slot * SLOT
        if start + SLOT > len(bucket):  # (a slot is written whole: past the end, it is empty)
            return 0, 0, 0
        count, _failed, _passed, _outage, _evidence, duration_sum = _HEADER.unpack_from(
            bucket, start)
        return (count, int(duration_sum / count) if count else 0,
                _LAST_RUN.unpack_from(bucket, start + FULL_WINDOW)[0])

    @staticmethod
    def push_steady_pass(bucket: bytearray, slot: int, commit: bytes, duration: int,
                         last_run: int) -> tuple[int, int, int, str, bool] | None:
        """`push` of one pass from a run that is not an outage, for the usual window, in place
        in `slot` of a bucket's slots (with the last run, `put_slot`'s): no evidence in it,
        and no failure outside outages on the same commit (the pass is then no evidence, and
        the score stays 0, as it was). Answers the window's count, its failures and its
        average duration after the pass, its status before it (`stable`, or `broken` when it
        held only failures; `stable` after), and whether the pass is quiet: the newest result
        before it a pass, and no failure leaving the window (its failure count, last status
        and the times of its last failure and evidence then stay as they were); None, the
        bucket untouched, for any other window (push it the long way). Most cases of most
        runs take this path: it skips the decoding, the object and the score, and leaves the
        bytes and figures the long way would (a test compares the two). An empty window (the
        case's first result) takes the long way. Answers (total runs, failed runs, average
        duration, status before, quiet)."""
        start = slot * SLOT
        if start >= len(bucket):
            return None
        count, failed, passed, outage, evidence, duration_sum = _unpack_header(bucket, start)
        if evidence or not count:
            return None
        keys = start + _HEADER_SIZE
        end = keys + _COMMIT * count  # where the commits end and the durations begin
        if failed:
            failures = failed & ~outage
            if (failures and commit != _NO_COMMIT
                    and _commit_among(bucket[keys:end], commit, failures)):
                return None  # it changed its mind on this commit: evidence
            before = "broken" if count >= 2 and failed.bit_count() == count else "stable"
        else:
            before = "stable"
        # the newest result a pass, and no failure leaving: the pass moves no failure count
        quiet = passed & 1 == 1 and not (count == WINDOW and failed >> (WINDOW - 1))
        code = (duration if type(duration) is int and 0 <= duration < _EXACT_DURATIONS
                else duration_code(duration))
        if count == WINDOW:  # the oldest result leaves: each list moves along by one, in place
            last = end + _DURATION * (WINDOW - 1)
            left = int.from_bytes(bucket[last:last + _DURATION], "little")
            duration_sum -= left if left < _EXACT_DURATIONS else code_duration(left)
            bucket[end + _DURATION:last + _DURATION] = bucket[end:last]
            bucket[keys + _COMMIT:end] = bucket[keys:end - _COMMIT]
            bucket[end:end + _DURATION] = code.to_bytes(_DURATION, "little")
        else:  # one more of each: the durations move behind the longer list of commits
            durations = bucket[end:end + _DURATION * count]
            bucket[keys + _COMMIT:end + _COMMIT] = bucket[keys:end]
            end += _COMMIT
            bucket[end:end + _DURATION * (count + 1)] = (code.to_bytes(_DURATION, "little")
                                                         + durations)
            count += 1
        bucket[keys:keys + _COMMIT] = commit
        duration_sum += code if code < _EXACT_DURATIONS else code_duration(code)
        failed = (failed << 1) & _FULL
        _pack_header_into(bucket, start, count, failed, ((passed << 1) | 1) & _FULL,
                          (outage << 1) & _FULL, 0, duration_sum)
        _LAST_RUN.pack_into(bucket, start + FULL_WINDOW, last_run)
        # (a plain tuple: most cases of most runs come here, and a named tuple costs 0.4 us)
        return count, failed.bit_count(), int(duration_sum / count), before, quiet

    @staticmethod
    def first_result(status: str, commit: bytes, outage: bool, duration,
                     threshold: float) -> FirstResult:
        """`push` of a case's first result into its empty window, then `stats`: the window's
        bytes, its figures and whether the result is evidence (a flaky result, unless from an
        outage run: its score is then 1). Every test of a project's first import takes this
        path: it skips the object, the push and the score (a test compares the two)."""
        code = duration_code(duration)
        evidence = status == "flaky" and not outage
        failed = status == "failed"
        average = code_duration(code)
        window = (_HEADER.pack(1, failed, status == "passed", outage, evidence, average)
                  + commit + code.to_bytes(_DURATION, "little"))
        score = 1.0 if evidence else 0.0  # (one result: its weight over the sum of one weight)
        figure = "flaky" if evidence and score >= threshold else "stable"
        return FirstResult(window, CaseStats(figure, score, 1, int(evidence), int(failed),
                                             average, status), evidence)


def _commit_among(commits: bytes | bytearray, commit: bytes, candidates: int) -> bool:
    """Is `commit` the key of one of the packed `commits` whose bit is set in `candidates`?"""
    found = commits.find(commit)
    while found >= 0:
        index, misaligned = divmod(found, _COMMIT)
        if not misaligned and candidates >> index & 1:
            return True
        found = commits.find(commit, found + 1)
    return False


@dataclass(frozen=True)
class Entry:
    """One result as `replay` takes it."""

    status: str  # passed | failed | flaky
    commit: str | None
    run_id: str
    outage: bool
    duration: int


def replay(newest_first: list[Entry]) -> tuple[WindowCodec, list[bool]]:
    """The window after `newest_first` arrived oldest first, and each result's evidence flag
    (newest first). Give it the newest `2 * WINDOW` results for the window's flags to see
    the full `WINDOW` results before each of them."""
    window = WindowCodec()
    flags: list[bool] = []
    previous_run, same_run = None, 0
    for result in reversed(newest_first):
        same_run = same_run + 1 if result.run_id == previous_run else 0
        previous_run = result.run_id
        flags.append(window.push(result.status, commit_key(result.commit), result.outage,
                                 result.duration, same_run))
    flags.reverse()
    return window, flags
