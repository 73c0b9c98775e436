"""Keeping per-case statistics, verdicts and error groups up to date when a run completes.

`apply_run` is called once per run, in the transaction that completes it (by
runs/completion.py, which also emits the events), and is idempotent (`runs.stats_applied`).
It takes the run's results with where their cases' windows live (a slot of their file's
bucket, `window_buckets`, given when the case is created: `place_cases`): from the import that
made the run when it holds them all, else read back in one streamed pass. It updates each
case's constant-size window (scoring.WindowCodec, the one owner of the window's rule and
format) in its slot and writes back the buckets it touched: reads of flakiness, history and
errors then never scan history, and a run costs the same whatever the history. A pass after
a pass (most cases of most runs) changes only the window's slot: the total runs, the average
duration and the last run are read from there. The figures readers filter and sort by (the
score, flaky and failed runs, the last status, the last flaky and failed times) are written to
`test_case_windows` only for the cases whose outcomes moved them, without reading them first.
A case's wide `test_cases` row is read only for the cases a pass did not leave at a score of
0 (`WindowCodec.push_steady_pass`: for those the status follows from the window), and its
status written only when it changed, which for most cases of most runs it does not.
(A case's tags follow its newest result at ingestion: results/service.py.) `recompute_case`
rebuilds one case's statistics from its stored results; a test proves they equal what the
incremental path stored (`stored_case`), byte for byte.

The SQL is in repository.py (`statistics_store`: one store per database); this module holds
the rules of what is read and written when.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from operator import attrgetter
from typing import Any, NamedTuple

from sqlalchemy import Connection

from redline.server.intelligence import scoring
from redline.server.intelligence.repository import (
    ErrorGroupCaseCount,
    ErrorGroupCount,
    FirstFigures,
    RunOutcome,
    StatisticsStore,
    StatusChange,
    WindowFigures,
    cases_in_chunks,
    statistics_store,
)
from redline.server.intelligence.scoring import WindowCodec
from redline.server.kit.clock import utcnow
from redline.server.kit.ids import new_ids

WRITE_CHUNK = 2000  # cases per write of their figures (one COPY round trip on PostgreSQL)
# Loaded buckets kept between writes of them, at most (16 MiB: about 48,000 cases). Past it,
# the changed ones are written and all of them dropped (read again if a later case needs one).
BUCKET_BYTES = 16 << 20


def run_outage(run) -> bool:
    return scoring.is_outage(run.failed_tests, run.total_tests - run.skipped_tests)


def _advance(window: WindowCodec, results):
    """Push `results` (oldest first; each `(status, commit key, outage, duration, created_at,
    same_run)`, none skipped) into the window; answers the times of the newest evidence and
    the newest failure among them (None: none)."""
    flaky_at = failed_at = None
    for status, commit, outage, duration, at, same_run in results:
        if window.push(status, commit, outage, duration, same_run):
            flaky_at = at
        if status == "failed":
            failed_at = at
    return flaky_at, failed_at


@dataclass
class RunStatistics:
    """What applying a run changed that its completion reports (runs/completion.py): its
    verdict, and the cases that became flaky (with their score) or are to be quarantined
    automatically."""

    verdict: str
    quarantined_failures: int
    became_flaky: list[tuple[str, float]] = field(default_factory=list)
    auto_quarantine: list[str] = field(default_factory=list)


class _Judged(NamedTuple):
    """A case that took the long way: its new figures and its status as the window before
    this run tells it whatever the threshold (None: its stored row decides)."""

    case_id: str
    stats: scoring.CaseStats
    before: str | None


def apply_run(conn: Connection, run_id: str,
              outcomes: list[RunOutcome] | None = None) -> RunStatistics | None:
    """Apply a completed run to its cases' statistics and give it its verdict. `outcomes`:
    the run's results from the import that made the run and stored all of them, in arrival
    order (`results.service.ingest`); without them they are read back. None when the run's
    statistics were applied already."""
    store = statistics_store(conn)
    run = store.run(run_id)
    if run is None or run.stats_applied:
        return None
    threshold, auto = store.project_rules(run.project_id)
    outage = run_outage(run)
    commit = scoring.commit_key(run.commit_sha)
    now = store.driver_time(utcnow())
    failed_cases: list[str] = []
    result = RunStatistics("passed", 0)
    writes = _RunWrites(store, run.project_id)
    long_way: list[_Judged] = []
    micros = _micros

    def could_quarantine(stats: scoring.CaseStats) -> bool:
        return bool(auto and stats.total_runs >= 5 and stats.flaky_runs
                    and stats.flakiness_score >= threshold)

    def judge_long_way() -> None:
        """The status of the cases that took the long way, against their stored one and
        their quarantine. A case's `test_cases` row is read (one read for them all) when its
        window had evidence before this run (its stored status depends on the threshold it
        was judged by, which may have changed since) or when it could now be quarantined
        automatically. Otherwise its stored status is the one its window gave, `stable` or
        `broken` (every write of a window writes the status it gives; a case that never ran
        holds the `stable` it was created with): most failing cases of most runs."""
        stored = store.case_standings([case.case_id for case in long_way
                                       if case.before is None or could_quarantine(case.stats)])
        for case_id, stats, before in long_way:
            standing = stored.get(case_id)
            status = before if standing is None else standing.status
            if stats.status != status:
                writes.changed.append(StatusChange(stats.status, case_id))
            if stats.status == "flaky" and status != "flaky":
                result.became_flaky.append((case_id, stats.flakiness_score))
            if standing is not None and could_quarantine(stats):
                active = standing.is_quarantined and (standing.quarantine_expires_at is None
                                                      or standing.quarantine_expires_at > now)
                if not active and not standing.quarantine_manual:
                    result.auto_quarantine.append(case_id)
        long_way.clear()

    codec = WindowCodec
    changed_bucket = writes.changed_bucket  # (a set's `add`: the set is emptied in place)
    push_steady_pass, first_result, slot_ran = (codec.push_steady_pass, codec.first_result,
                                                codec.slot_ran)
    source = (store.run_outcomes(run_id) if outcomes is None
              else sorted(outcomes, key=_by_bucket_and_case))  # (stable: arrival order kept)
    # The run's results grouped by case, in chunks of cases (memory is bounded by
    # WRITE_CHUNK cases and BUCKET_BYTES); times stay in the driver's form.
    for groups in cases_in_chunks(source, WRITE_CHUNK):
        buckets = writes.load_buckets({rows[0].bucket_id for rows in groups})
        for rows in groups:
            # each row (`RunOutcome`): the case, its bucket and slot, then one result
            case_id, bucket_id, slot, status, duration, at = rows[0]
            bucket = buckets[bucket_id]
            if not outage and len(rows) == 1 and status == "passed":
                steady = push_steady_pass(bucket, slot, commit, duration, micros(at))
                if steady is not None:  # one more pass, no evidence in sight: a score of 0
                    _total, failures, _average, status_before, quiet = steady
                    changed_bucket(bucket_id)
                    if not quiet:  # the last status or the failures moved
                        writes.figures.append(WindowFigures(
                            flaky_runs=0, failed_runs=failures, last_status="passed",
                            keep_flaky=False, flaky_at=None, keep_failed=failures > 0,
                            failed_at=None, flakiness_score=0.0, test_case_id=case_id))
                    # Its score was 0 and stays 0: the case row changes only if it was
                    # broken. (Every write of a window's figures writes the status it gives,
                    # so the stored status is the one the window before this pass gives.)
                    if status_before != "stable":
                        writes.changed.append(StatusChange("stable", case_id))
                    continue
            ran: list[tuple] = []
            for row in rows:
                status = row.status
                if status != "skipped":
                    ran.append((status, commit, outage, row.duration, row.created_at,
                                len(ran)))  # the results before it in `ran` are this run's
                    if status == "failed":
                        failed_cases.append(case_id)
            if not ran:
                continue  # only skipped: the window is unchanged
            first = not slot_ran(bucket, slot)
            before: str | None = "stable"  # (what a case that never ran holds)
            if first and len(ran) == 1:  # a new test's first result (a first import's all)
                status, _commit, _outage, duration, at, _same_run = ran[0]
                encoded, stats, evidence = first_result(status, commit, outage, duration,
                                                        threshold)
                flaky_at = at if evidence else None
                failed_at = at if status == "failed" else None
            else:
                window = codec.decode(None if first else codec.slot_window(bucket, slot))
                before = window.status_without_evidence()
                flaky_at, failed_at = _advance(window, ran)
                stats, encoded = window.stats(threshold), window.encode()
                keep_flaky, keep_failed = window.evidence > 0, window.failed > 0
            codec.put_slot(bucket, slot, encoded, micros(ran[-1][4]))
            changed_bucket(bucket_id)
            if first:
                writes.first_figures.append(FirstFigures(
                    flaky_runs=stats.flaky_runs, failed_runs=stats.failed_runs,
                    last_status=stats.last_status, last_flaky_at=flaky_at,
                    last_failed_at=failed_at, flakiness_score=stats.flakiness_score,
                    test_case_id=case_id, project_id=run.project_id))
            else:  # a time kept while its kind stays in the window, unless a newer came
                writes.figures.append(WindowFigures(
                    flaky_runs=stats.flaky_runs, failed_runs=stats.failed_runs,
                    last_status=stats.last_status, keep_flaky=keep_flaky, flaky_at=flaky_at,
                    keep_failed=keep_failed, failed_at=failed_at,
                    flakiness_score=stats.flakiness_score, test_case_id=case_id))
            if before is None or stats.status != before or could_quarantine(stats):
                long_way.append(_Judged(case_id, stats, before))  # (else nothing to judge)
        judge_long_way()
        writes.flush()
    writes.flush(last=True)

    # the verdict: failures of cases quarantined when the run started do not count
    quarantined = store.quarantined_at(sorted(set(failed_cases)), run.created_at)
    result.quarantined_failures = sum(1 for case in failed_cases if case in quarantined)
    if run.status == "cancelled":
        result.verdict = "cancelled"
    elif len(failed_cases) > result.quarantined_failures or (run.status == "failed"
                                                             and not failed_cases):
        result.verdict = "failed"
    store.set_verdict(run_id, result.verdict, result.quarantined_failures)
    return result


_by_bucket_and_case = attrgetter("bucket_id", "case_id")


@lru_cache(maxsize=16)  # the results of one import share their time
def _micros(value) -> int:
    """A result's time, as the driver gives it, in microseconds since the epoch (a slot keeps
    it so)."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return (moment - _EPOCH) // _MICROSECOND


_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)


def slot_time(micros: int) -> datetime | None:
    """The time a slot keeps (naive UTC, as the database's times are read)."""
    return _EPOCH + timedelta(microseconds=micros) if micros else None


def place_cases(conn: Connection, project_id: str,
                file_paths: list[str | None]) -> list[tuple[int, int]]:
    """A slot for the window of each new case of the project, given by its file path (None:
    no file): its file's last bucket while it has room, else new buckets, created empty (their
    slots grow as windows are written). Answers (bucket id, slot) in the order given."""
    store = statistics_store(conn)
    store.lock_project(project_id)
    files = [path or "" for path in file_paths]
    # file -> [its last bucket's id (None: new), part, slots given]
    last: dict[str, list[Any]] = {
        path: list(tail)
        for path, tail in store.file_tails(project_id, sorted(set(files))).items()}
    grown: dict[int, int] = {}  # existing bucket -> its slots now
    fresh: dict[tuple[str, int], int] = {}  # (file, part) of a new bucket -> its slots
    placed = []  # (bucket id or None, file, part, slot)
    for path in files:
        bucket = last.get(path)
        if bucket is None or bucket[2] >= scoring.BUCKET_SLOTS:
            part = 0 if bucket is None else bucket[1] + 1
            bucket = last[path] = [None, part, 0]
        placed.append((bucket[0], path, bucket[1], bucket[2]))
        bucket[2] += 1
        if bucket[0] is None:
            fresh[path, bucket[1]] = bucket[2]
        else:
            grown[bucket[0]] = bucket[2]
    store.set_slots(grown)
    created = store.create_buckets(project_id, fresh)
    return [(created[path, part] if bucket_id is None else bucket_id, slot)
            for bucket_id, path, part, slot in placed]


class _RunWrites:
    """What `apply_run` changes, kept until `flush`: the buckets it loaded (and the ids of
    those it changed), the figures of the windows whose outcomes moved (`figures`), of the
    windows that got their first result (`first_figures`) and the cases whose status changed
    (`changed`)."""

    def __init__(self, store: StatisticsStore, project_id: str):
        self.store = store
        self.buckets: dict[int, bytearray] = {}
        self._changed_buckets: set[int] = set()
        self.changed_bucket = self._changed_buckets.add
        self.figures: list[WindowFigures] = []
        self.first_figures: list[FirstFigures] = []
        self.changed: list[StatusChange] = []
        store.lock_project(project_id)

    def load_buckets(self, ids: set[int]) -> dict[int, bytearray]:
        """The buckets with these ids, from those already loaded or read now."""
        self.buckets.update(self.store.load_buckets(
            sorted(i for i in ids if i not in self.buckets)))
        return self.buckets

    def flush(self, last: bool = False) -> None:
        """Write what changed; at the `last` flush (or past `BUCKET_BYTES` of loaded buckets)
        the changed buckets too."""
        if last or sum(map(len, self.buckets.values())) > BUCKET_BYTES:
            self.store.write_buckets({i: self.buckets[i] for i in self._changed_buckets})
            # Emptied in place: `changed_bucket` is the set's own `add` (issue 21: a new set
            # here once left the changes of every later chunk unwritten).
            self.buckets.clear()
            self._changed_buckets.clear()
        self.store.write_figures(self.figures, self.first_figures, self.changed)
        self.figures, self.first_figures, self.changed = [], [], []


def recompute_case(conn: Connection, case_id: str) -> dict:
    """A case's statistics rebuilt from its stored results, as `stored_case` gives them: the
    check on the incremental path. The newest `2 * WINDOW` results are replayed, so each
    result in the window is judged against the `WINDOW` results before it, as it was when it
    arrived."""
    store = statistics_store(conn)
    threshold = store.case_threshold(case_id)
    rows = store.window_results(case_id, 2 * scoring.WINDOW)  # newest first
    window, flags = scoring.replay([
        scoring.Entry(r.status, r.commit_sha, r.run_id, run_outage(r), r.duration)
        for r in rows])
    in_window = list(zip(rows, flags))[:scoring.WINDOW]
    flaky_at = next((r.created_at for r, flag in in_window if flag), None)
    failed_at = next((r.created_at for r, _flag in in_window if r.status == "failed"), None)
    figures = window.stats(threshold)
    return {"window_state": window.encode(), "avg_duration": figures.avg_duration,
            "last_run_at": rows[0].created_at if rows else None, "status": figures.status,
            "flakiness_score": figures.flakiness_score, "total_runs": figures.total_runs,
            "flaky_runs": figures.flaky_runs, "failed_runs": figures.failed_runs,
            "last_status": figures.last_status, "last_flaky_at": flaky_at,
            "last_failed_at": failed_at}


def stored_case(conn: Connection, case_id: str) -> dict | None:
    """A case's statistics as the incremental path kept them (its window from its bucket's
    slot, its figures from its row), with `recompute_case`'s keys; None when it never ran."""
    stored = statistics_store(conn).stored_window(case_id)
    if stored is None:
        return None
    row = stored.figures
    total, average, last_run = WindowCodec.slot_figures(stored.bucket, stored.slot)
    return {"window_state": WindowCodec.slot_window(stored.bucket, stored.slot),
            "avg_duration": average, "last_run_at": slot_time(last_run),
            "status": stored.status, "flakiness_score": row.flakiness_score,
            "total_runs": total, "flaky_runs": row.flaky_runs, "failed_runs": row.failed_runs,
            "last_status": row.last_status, "last_flaky_at": row.last_flaky_at,
            "last_failed_at": row.last_failed_at}


def rebuild_windows(conn: Connection, case_ids: list[str]) -> int:
    """Rewrite the window, figures and status of each of these cases that differ from a
    recomputation from its stored results (`recompute_case`); answers how many did. The
    repair of windows whose writes were lost (issue 21: migration 0018), not a hot path: a
    few queries a case."""
    store = statistics_store(conn)
    rebuilt = 0
    for start in range(0, len(case_ids), _REBUILD_CHUNK):
        chunk = case_ids[start:start + _REBUILD_CHUNK]
        places = {case.id: case for case in store.places_of_cases(chunk)}
        buckets = store.buckets_by_id(sorted({case.bucket_id for case in places.values()}))
        changed: set[int] = set()
        for case_id in chunk:
            fresh = recompute_case(conn, case_id)
            stored = stored_case(conn, case_id)  # (None: no figures, it never ran)
            if (case_id not in places or stored == fresh
                    or (stored is None and not fresh["total_runs"])):
                continue
            case = places[case_id]
            bucket_id, slot = case.bucket_id, case.slot
            bucket = buckets[bucket_id]
            last_run = fresh["last_run_at"]
            WindowCodec.clear_slot(bucket, slot)
            if fresh["total_runs"]:
                WindowCodec.put_slot(bucket, slot, fresh["window_state"],
                                     _micros(last_run) if last_run else 0)
            changed.add(bucket_id)
            store.replace_figures(case_id, case.project_id, fresh)
            rebuilt += 1
        store.write_buckets({bucket_id: buckets[bucket_id] for bucket_id in changed})
    return rebuilt


_REBUILD_CHUNK = 500


def slot_figures(conn: Connection, cases) -> dict[str, tuple[int, int, datetime | None]]:
    """case id -> (total runs, average duration, last run) of the cases given as rows with
    `id`, `bucket_id` and `slot`, read from their buckets' slots (a case that never ran:
    0, 0, None): a page of cases reads its slots alone (the database cuts them out of their
    buckets), more read their buckets whole, once each."""
    store = statistics_store(conn)
    wanted = [(case.id, case.bucket_id, case.slot) for case in cases]
    figures = {}
    if len(wanted) <= _SLOTS_APART:
        for case_id, slot_bytes in store.slots_of_cases([w[0] for w in wanted]):
            total, average, last_run = WindowCodec.slot_figures(slot_bytes, 0)
            figures[case_id] = (total, average, slot_time(last_run))
        return figures
    buckets = store.buckets_by_id(sorted({bucket_id for _case, bucket_id, _slot in wanted}))
    for case_id, bucket_id, slot in wanted:
        total, average, last_run = WindowCodec.slot_figures(buckets[bucket_id], slot)
        figures[case_id] = (total, average, slot_time(last_run))
    return figures


_SLOTS_APART = 500  # (a page holds 500 cases at most)


def slowest_cases(conn: Connection, project_id: str, limit: int) -> list[tuple[str, int]]:
    """(case id, average duration) of the project's `limit` slowest cases that ran, slowest
    first (ties by case id): the averages read from every window's slot, bucket by bucket,
    then only the cases in the running looked up."""
    store = statistics_store(conn)
    averages: list[tuple[int, int, int]] = []  # (average, bucket id, slot)
    for bucket_id, slots, bucket in store.project_buckets(project_id):
        for slot in range(slots):
            total, average, _last_run = WindowCodec.slot_figures(bucket, slot)
            if total:  # (a case that never ran has no average)
                averages.append((average, bucket_id, slot))
    if not averages:
        return []
    cutoff = heapq.nlargest(limit, averages)[-1][0]  # the ties at the cutoff are all kept
    running = {(bucket_id, slot): average for average, bucket_id, slot in averages
               if average >= cutoff}
    found = []
    for case_id, bucket_id, slot in store.cases_in_buckets(
            sorted({bucket_id for bucket_id, _slot in running})):
        if (bucket_id, slot) in running:
            found.append((-running[bucket_id, slot], case_id))
    return [(case_id, -negative) for negative, case_id in sorted(found)[:limit]]


def window_results(conn: Connection, case_id: str, limit: int) -> Sequence:
    """The case's newest `limit` results that ran, from runs whose statistics are applied,
    newest first, with their run's commit and counts."""
    return statistics_store(conn).window_results(case_id, limit)


def set_quarantine(conn: Connection, project_id: str, case_ids: list[str], quarantined: bool,
                   *, actor_id: str | None, reason: str | None, owner: str | None,
                   expires_at: datetime | None, automatic: bool = False) -> None:
    """Quarantine or release cases alike, recording who, when and why in their history, in a
    statement per table (a run may cross the threshold for hundreds of cases at once). The
    caller emits `test.quarantined` (`quarantined_payloads`)."""
    if not case_ids:
        return
    store = statistics_store(conn)
    now = utcnow()
    action = "quarantine" if quarantined else "unquarantine"
    expires = expires_at if quarantined else None
    store.add_quarantine_events([
        {"id": event_id, "project_id": project_id, "test_case_id": case_id, "action": action,
         "automatic": automatic, "reason": reason, "owner": owner, "expires_at": expires,
         "actor_id": actor_id, "created_at": now}
        for event_id, case_id in zip(new_ids("qe", len(case_ids)), case_ids)])
    values = {"is_quarantined": quarantined, "quarantined_by": actor_id,
              "quarantined_at": now, "quarantine_reason": reason if quarantined else None,
              "quarantine_owner": owner if quarantined else None,
              "quarantine_expires_at": expires}
    if not automatic:
        values["quarantine_manual"] = True
    store.set_quarantine_flags(case_ids, values)


def quarantined_payloads(conn: Connection, case_ids: list[str], *, reason: str | None,
                         owner: str | None, automatic: bool,
                         expires_at: str | None) -> Iterator[dict]:
    """The `test.quarantined` payloads of these cases, read as they are consumed (only when a
    webhook subscribes)."""
    for case in statistics_store(conn).case_titles(case_ids):
        yield {"testCaseId": case.id, "fullTitle": case.full_title, "filePath": case.file_path,
               "reason": reason, "owner": owner, "automatic": automatic,
               "expiresAt": expires_at}


def flaky_payloads(conn: Connection, run_id: str,
                   became_flaky: list[tuple[str, float]]) -> Iterator[dict]:
    """The `test.flaky` payloads of the cases a run made flaky, read as they are consumed."""
    scores = dict(became_flaky)
    for case in statistics_store(conn).case_titles([case_id for case_id, _ in became_flaky]):
        yield {"testCaseId": case.id, "fullTitle": case.full_title, "filePath": case.file_path,
               "flakinessScore": scores[case.id], "runId": run_id}


def record_error_groups(conn: Connection, project_id: str, run_id: str) -> None:
    """Count the run's failures into their error groups and each group's cases."""
    store = statistics_store(conn)
    groups: dict[str, ErrorGroupCount] = {}
    per_case: dict[tuple[str, str], ErrorGroupCaseCount] = {}
    for failure in store.run_failures(run_id):
        fp, at = failure.error_fingerprint, failure.created_at  # (times in the driver's form)
        group = groups.get(fp)
        if group is None:  # only a new group's error is decoded
            error = store.decode_error(failure.error)
            group = groups[fp] = ErrorGroupCount(
                project_id=project_id, fingerprint=fp,
                message=(error.get("message") or error.get("stack") or "")[:2000],
                error_type=error.get("type") or None, first_seen=at, last_seen=at,
                occurrences=0)
        group.occurrences += 1
        group.last_seen = max(group.last_seen, at)
        case = per_case.get((fp, failure.test_case_id))
        if case is None:
            case = per_case[(fp, failure.test_case_id)] = ErrorGroupCaseCount(
                project_id=project_id, fingerprint=fp, test_case_id=failure.test_case_id,
                first_seen=at, last_seen=at, occurrences=0)
        case.occurrences += 1
    if groups:
        store.merge_error_groups(list(groups.values()), list(per_case.values()))
