"""Migrations and the model describe the same schema, on SQLite and on PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from redline.server.tables import metadata


def test_migrations_produce_the_model_schema(migrated_url):
    engine = create_engine(migrated_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, metadata)
    engine.dispose()
    assert differences == []


def test_migrating_twice_changes_nothing(migrated_url):
    from redline.server.db import migrate

    migrate(migrated_url)  # already at head: a no-op, not an error


def _config(url: str):
    from alembic.config import Config

    from redline.server import db

    config = Config()
    config.set_main_option("script_location", str(db.Path(db.__file__).parent / "migrations"))
    config.set_main_option("sqlalchemy.url", url)
    return config


def _database_at(tmp_path, revision: str):
    """A SQLite database migrated up to `revision` (an old schema to convert): its alembic
    config and an engine on it."""
    from alembic import command

    url = f"sqlite:///{tmp_path / 'old.db'}"
    config = _config(url)
    command.upgrade(config, revision)
    return config, create_engine(url)


def _team_and_project(conn) -> None:
    """A team and a project (`proj_1`) as an old schema holds them, in plain SQL."""
    from sqlalchemy import text

    moment = "'2026-01-01 00:00:00.000000'"
    conn.execute(text(f"INSERT INTO teams (id, name, created_at, updated_at) "
                      f"VALUES ('team_1', 't', {moment}, {moment})"))
    conn.execute(text(
        f"INSERT INTO projects (id, team_id, name, data_retention_days, flakiness_threshold, "
        f"auto_quarantine_enabled, settings_updated_at, created_at, updated_at) VALUES "
        f"('proj_1', 'team_1', 'p', 90, 0.3, 1, {moment}, {moment}, {moment})"))


def _wide_window(pushes: list[tuple[str, str | None, int]], *,
                 commits: list[str | None] | None = None,
                 durations: list[int] | None = None) -> bytes:
    """A window of `pushes` (oldest first: status, commit, duration) packed as before 0010:
    8-byte commit keys and 4-byte durations after the same header; `commits` and `durations`
    (oldest first) in place of the pushes' own, when given."""
    import hashlib
    import struct

    from redline.server.intelligence import scoring

    window = scoring.WindowCodec()
    for status, commit, duration in pushes:
        window.push(status, scoring.commit_key(commit), False, duration)
    commits = [c for _s, c, _d in pushes] if commits is None else commits
    durations = [d for _s, _c, d in pushes] if durations is None else durations
    return (struct.pack("<BQQQQQ", window.count, window.failed, window.passed, window.outage,
                        window.evidence, sum(durations))
            + b"".join(hashlib.blake2b(c.encode(), digest_size=8).digest() if c else bytes(8)
                       for c in commits[::-1])
            + b"".join(d.to_bytes(4, "little") for d in durations[::-1]))


def _run_with_result(conn, number: int, commit: str, status: str, duration: int) -> None:
    """run_N on `commit` (statistics applied) with one result of tc_1, on day N, in plain SQL."""
    from sqlalchemy import text

    moment = f"'2026-01-0{number} 00:00:00.000000'"
    conn.execute(text(
        "INSERT INTO runs (id, project_id, commit_sha, status, source, tags, grep_patterns, "
        "shards_done, total_tests, passed_tests, failed_tests, skipped_tests, flaky_tests, "
        f"duration, stats_applied, created_at, updated_at) VALUES ('run_{number}', 'proj_1', "
        f"'{commit}', 'passed', 'api', '[]', '[]', '[]', 1, 1, 0, 0, 0, {duration}, 1, "
        f"{moment}, {moment})"))
    conn.execute(text(
        "INSERT INTO test_results (id, run_id, project_id, test_case_id, title, full_title, "
        f"status, duration, retries, attempt, is_flaky, created_at) VALUES ('test_{number}', "
        f"'run_{number}', 'proj_1', 'tc_1', 't', 'a > t', '{status}', {duration}, 0, 1, 0, "
        f"{moment})"))


def test_upgrading_converts_each_case_window_in_place(tmp_path):
    """0006 packs the old JSON window (`recent`) into `window_state` without reading history.
    (A scratch SQLite file: the session's database is already at head.)"""
    import json

    from alembic import command
    from sqlalchemy import text

    from redline.server.intelligence import scoring

    config, engine = _database_at(tmp_path, "0005")
    old_window = [["flaky", "c2", "r3", "2026-01-03T00:00:00.000Z", False, 30],
                  ["passed", "c1", "r2", "2026-01-02T00:00:00.000Z", False, 20],
                  ["failed", "c1", "r1", "2026-01-01T00:00:00.000Z", False, 10]]
    with engine.begin() as conn:
        _team_and_project(conn)
        conn.execute(text(
            "INSERT INTO test_cases (id, project_id, identity, full_title, title, created_at, "
            "status, flakiness_score, total_runs, flaky_runs, failed_runs, avg_duration, "
            "is_quarantined, quarantine_manual, recent) VALUES ('tc_1', 'proj_1', 'i', "
            "'a > t', 't', '2026-01-01 00:00:00.000000', 'flaky', 0.5, 3, 2, 1, 20, 0, 0, "
            ":recent)"), {"recent": json.dumps(old_window)})
    command.upgrade(config, "0011")
    with engine.connect() as conn:  # (the window lives in test_case_windows since 0008)
        packed = conn.execute(text("SELECT window_state FROM test_case_windows")).scalar_one()
    engine.dispose()
    stats = scoring.WindowCodec.decode(packed).stats(0.3)
    # newest first: flaky (evidence), a pass on c1 after a failure on c1 (evidence), a fail
    assert (stats.total_runs, stats.flaky_runs, stats.failed_runs) == (3, 2, 1)
    assert stats.avg_duration == 20 and stats.last_status == "flaky"


def test_case_pages_keep_room_for_statistics_updates_on_postgresql(migrated_url):
    """0007: every run rewrites the statistics of the cases that ran; with half of each page
    free, PostgreSQL keeps the new row version on its page and leaves the indexes alone."""
    import pytest
    from sqlalchemy import text

    if not migrated_url.startswith("postgresql"):
        pytest.skip("a PostgreSQL storage setting: SQLite has no fillfactor")
    engine = create_engine(migrated_url)
    with engine.connect() as conn:
        options = dict(conn.execute(text(
            "SELECT relname, reloptions FROM pg_class "
            "WHERE relname IN ('test_cases', 'test_case_windows')")).all())
    engine.dispose()
    # 0008: the windows, rewritten by nearly every run, keep the same room
    assert set(options) == {"test_cases", "test_case_windows"}
    assert all("fillfactor=50" in values for values in options.values())


def test_moving_windows_to_their_own_table_keeps_every_result(tmp_path):
    """0008 moves each case's window, average duration and last run time to
    `test_case_windows`. On SQLite that rebuilds `test_cases` (copy, drop, rename): the drop of
    a table other rows refer to must not take those rows with it (an ON DELETE CASCADE fires on
    a DROP TABLE while foreign keys are enforced)."""
    from alembic import command
    from sqlalchemy import text

    from redline.server.intelligence import scoring

    config, engine = _database_at(tmp_path, "0007")
    window = scoring.WindowCodec()
    window.push("passed", scoring.commit_key("c1"), False, 120)
    wide = _wide_window([("passed", "c1", 120)])  # as windows were packed then
    moment = "'2026-01-01 00:00:00.000000'"
    with engine.begin() as conn:
        _team_and_project(conn)
        conn.execute(text(
            f"INSERT INTO runs (id, project_id, commit_sha, status, source, tags, grep_patterns,"
            f" shards_done, total_tests, passed_tests, failed_tests, skipped_tests, flaky_tests,"
            f" duration, stats_applied, created_at, updated_at) VALUES ('run_1', 'proj_1', "
            f"'c1', 'passed', 'api', '[]', '[]', '[]', 1, 1, 0, 0, 0, 120, 1, {moment}, "
            f"{moment})"))
        for case_id, state in (("tc_1", wide), ("tc_2", None)):
            conn.execute(text(
                "INSERT INTO test_cases (id, project_id, identity, full_title, title, "
                "created_at, status, flakiness_score, total_runs, flaky_runs, failed_runs, "
                "avg_duration, last_run_at, is_quarantined, quarantine_manual, window_state) "
                f"VALUES (:id, 'proj_1', :id, 'a > t', 't', {moment}, 'stable', 0, 1, 0, 0, "
                f"120, {moment}, 0, 0, :state)"), {"id": case_id, "state": state})
        conn.execute(text(
            "INSERT INTO test_results (id, run_id, project_id, test_case_id, title, full_title, "
            "status, duration, retries, attempt, is_flaky, created_at) VALUES ('test_1', "
            f"'run_1', 'proj_1', 'tc_1', 't', 'a > t', 'passed', 120, 0, 1, 0, {moment})"))
    command.upgrade(config, "0011")
    with engine.connect() as conn:
        results = conn.execute(text("SELECT count(*) FROM test_results")).scalar_one()
        windows = conn.execute(text(
            "SELECT test_case_id, window_state, avg_duration, last_run_at "
            "FROM test_case_windows")).all()
        cases = conn.execute(text("SELECT count(*) FROM test_cases")).scalar_one()
    engine.dispose()
    assert (results, cases) == (1, 2)
    # the case that never ran has no window row; the other's values moved unchanged (and
    # its window in the layout of 0010)
    assert [(w.test_case_id, bytes(w.window_state), w.avg_duration) for w in windows] == [
        ("tc_1", window.encode(), 120)]
    assert windows[0].last_run_at.startswith("2026-01-01 00:00:00")

    # and back: the downgrade returns the values to test_cases, results kept as well
    command.downgrade(config, "0007")
    with engine.connect() as conn:
        cases = conn.execute(text(
            "SELECT id, window_state, avg_duration FROM test_cases ORDER BY id")).all()
        results = conn.execute(text("SELECT count(*) FROM test_results")).scalar_one()
    engine.dispose()
    assert results == 1
    assert [(c.id, c.window_state and bytes(c.window_state), c.avg_duration) for c in cases] == [
        ("tc_1", wide, 120), ("tc_2", None, 0)]


def test_moving_the_run_figures_to_the_narrow_table_keeps_their_values(tmp_path):
    """0009 moves a case's counts, last status and last flaky and failed times to
    `test_case_windows`, beside its window; the case that never ran keeps no row there (its
    counts read as 0). The downgrade returns them to `test_cases`."""
    from alembic import command
    from sqlalchemy import text

    config, engine = _database_at(tmp_path, "0008")
    moment = "'2026-01-01 00:00:00.000000'"
    flaky_at, failed_at = "2026-01-02 00:00:00.000000", "2026-01-03 00:00:00.000000"
    with engine.begin() as conn:
        _team_and_project(conn)
        ran = f"'flaky', 0.4, 12, 3, 5, 'failed', '{flaky_at}', '{failed_at}'"
        for case_id, figures in (("tc_1", ran), ("tc_2", "'new', 0, 0, 0, 0, NULL, NULL, NULL")):
            conn.execute(text(
                "INSERT INTO test_cases (id, project_id, identity, full_title, title, "
                "created_at, status, flakiness_score, total_runs, flaky_runs, failed_runs, "
                "last_status, last_flaky_at, last_failed_at, is_quarantined, quarantine_manual)"
                f" VALUES (:id, 'proj_1', :id, 'a > t', 't', {moment}, {figures}, 0, 0)"),
                {"id": case_id})
        conn.execute(text("INSERT INTO test_case_windows (test_case_id, window_state, "
                          f"avg_duration, last_run_at) VALUES ('tc_1', x'00', 120, {moment})"))
    command.upgrade(config, "0011")
    with engine.connect() as conn:
        windows = conn.execute(text(
            "SELECT test_case_id, avg_duration, total_runs, flaky_runs, failed_runs, "
            "last_status, last_flaky_at, last_failed_at FROM test_case_windows")).all()
        cases = conn.execute(text(
            "SELECT id, status, flakiness_score FROM test_cases ORDER BY id")).all()
        columns = {row[1] for row in conn.execute(text("PRAGMA table_info(test_cases)"))}
    engine.dispose()
    assert [tuple(w) for w in windows] == [("tc_1", 120, 12, 3, 5, "failed", flaky_at, failed_at)]
    assert [tuple(c) for c in cases] == [("tc_1", "flaky", 0.4), ("tc_2", "new", 0.0)]
    assert not columns & {"total_runs", "flaky_runs", "failed_runs", "last_status",
                          "last_flaky_at", "last_failed_at"}

    command.downgrade(config, "0008")
    with engine.connect() as conn:
        cases = conn.execute(text(
            "SELECT id, total_runs, flaky_runs, failed_runs, last_status, last_flaky_at, "
            "last_failed_at FROM test_cases ORDER BY id")).all()
        windows = conn.execute(text("SELECT test_case_id, avg_duration "
                                    "FROM test_case_windows")).all()
    engine.dispose()
    assert [tuple(c) for c in cases] == [("tc_1", 12, 3, 5, "failed", flaky_at, failed_at),
                                         ("tc_2", 0, 0, 0, None, None, None)]
    assert [tuple(w) for w in windows] == [("tc_1", 120)]


def test_halving_the_windows_keeps_what_they_say(tmp_path):
    """0010 packs each window with 4-byte commit keys and 2-byte durations (exact below
    32.768 s, to 1.024 s above): the same window as the current code pushes, and its average
    from the durations as kept. The downgrade widens it back, the commit keys hashed again
    from the commits of the stored results it holds; a result retention deleted leaves an
    empty key."""
    import hashlib

    from alembic import command
    from sqlalchemy import text

    from redline.server.intelligence import scoring

    pushes = [("passed", "c1", 120), ("failed", "c2", 40_000), ("failed", "c1", 95)]
    config, engine = _database_at(tmp_path, "0009")
    with engine.begin() as conn:
        _team_and_project(conn)
        conn.execute(text(
            "INSERT INTO test_cases (id, project_id, identity, full_title, title, created_at, "
            "status, flakiness_score, is_quarantined, quarantine_manual) VALUES ('tc_1', "
            "'proj_1', 'i', 'a > t', 't', '2026-01-01 00:00:00.000000', 'flaky', 0.5, 0, 0)"))
        for number, (status, commit, duration) in enumerate(pushes, start=1):
            _run_with_result(conn, number, commit, status, duration)
        conn.execute(text(
            "INSERT INTO test_case_windows (test_case_id, window_state, avg_duration, "
            "total_runs) VALUES ('tc_1', :state, 13405, 3)"), {"state": _wide_window(pushes)})
    command.upgrade(config, "0011")
    with engine.connect() as conn:
        state, average = conn.execute(text(
            "SELECT window_state, avg_duration FROM test_case_windows")).one()
    window = scoring.WindowCodec()
    for status, commit, duration in pushes:
        window.push(status, scoring.commit_key(commit), False, duration)
    assert bytes(state) == window.encode() and len(state) == 41 + 6 * 3
    # 40,000 ms is kept as 39 steps of 1,024 ms: (120 + 39,936 + 95) / 3
    assert average == window.stats(0.3).avg_duration == 13383
    assert window.stats(0.3)[1:5] == (window.score(), 3, 1, 2)  # the evidence: c1 re-run

    with engine.begin() as conn:  # retention took the oldest result
        conn.execute(text("DELETE FROM test_results WHERE id = 'test_1'"))
    command.downgrade(config, "0009")
    with engine.connect() as conn:
        state, average = conn.execute(text(
            "SELECT window_state, avg_duration FROM test_case_windows")).one()
    engine.dispose()
    wide = _wide_window(pushes, commits=[None, "c2", "c1"], durations=[120, 39_936, 95])
    assert bytes(state) == wide and average == 13383
    assert hashlib.blake2b(b"c1", digest_size=8).digest() in bytes(state)


def test_putting_the_windows_in_buckets_by_file_keeps_what_they_say(tmp_path):
    """0012 moves each window, with its last run, into a slot of its file's bucket (256 cases
    a bucket at most; cases without a file share the bucket of ''); the total runs and the
    average are then read from the slot, and the score moves to the narrow row. The downgrade
    puts them back in each case's rows."""
    from alembic import command
    from sqlalchemy import text

    from redline.server.intelligence import scoring

    config, engine = _database_at(tmp_path, "0011")
    window = scoring.WindowCodec()
    for duration in (100, 300):
        window.push("passed", scoring.commit_key("c1"), False, duration)
    # 258 cases of one file (two buckets), one without a file (one more); tc_000 never ran
    cases = [(f"tc_{n:03}", "tests/a.spec.ts") for n in range(258)] + [("tc_nofile", None)]
    with engine.begin() as conn:
        _team_and_project(conn)
        conn.execute(text(
            "INSERT INTO test_cases (id, project_id, identity, file_path, full_title, title, "
            "created_at, status, flakiness_score, is_quarantined, quarantine_manual) VALUES "
            "(:id, 'proj_1', :id, :file, :id, :id, '2026-01-01 00:00:00.000000', 'stable', "
            ":score, 0, 0)"), [{"id": case_id, "file": file, "score": 0.25 * (case_id == "tc_257")}
                               for case_id, file in cases])
        conn.execute(text(
            "INSERT INTO test_case_windows (test_case_id, window_state, avg_duration, "
            "last_run_at, total_runs, flaky_runs, failed_runs, last_status) VALUES (:id, "
            ":state, 200, '2026-01-02 03:04:05.678901', 2, 0, 0, 'passed')"),
            [{"id": case_id, "state": window.encode()} for case_id, _file in cases[1:]])
    command.upgrade(config, "0012")
    with engine.connect() as conn:
        buckets = conn.execute(text(
            "SELECT id, file_path, part, slots, state FROM window_buckets ORDER BY id")).all()
        slots = dict(conn.execute(text(
            "SELECT test_case_id, bucket_id || ':' || slot FROM test_case_windows")).all())
        scores = dict(conn.execute(text(
            "SELECT test_case_id, flakiness_score FROM test_case_windows")).all())
        case_columns = [c[1] for c in conn.execute(text("PRAGMA table_info(test_cases)"))]
    assert [(b.file_path, b.part, b.slots, len(b.state)) for b in buckets] == [
        ("", 0, 1, scoring.SLOT),
        ("tests/a.spec.ts", 0, 256, 256 * scoring.SLOT),
        ("tests/a.spec.ts", 1, 1, scoring.SLOT)]
    assert slots["tc_nofile"] == f"{buckets[0].id}:0"
    assert slots["tc_001"] == f"{buckets[1].id}:0" and slots["tc_257"] == f"{buckets[2].id}:0"
    assert "tc_000" not in slots
    assert scores["tc_257"] == 0.25 and scores["tc_001"] == 0.0
    assert "flakiness_score" not in case_columns
    last = buckets[2].state
    assert scoring.WindowCodec.slot_window(last, 0) == window.encode()
    total, average, micros = scoring.WindowCodec.slot_figures(last, 0)
    from redline.server.intelligence.stats import slot_time

    assert (total, average, str(slot_time(micros))) == (2, 200, "2026-01-02 03:04:05.678901")

    command.downgrade(config, "0011")
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT test_case_id, window_state, avg_duration, last_run_at, total_runs "
            "FROM test_case_windows ORDER BY test_case_id")).all()
        tables = conn.execute(text(
            "SELECT name FROM sqlite_master WHERE name = 'window_buckets'")).all()
        scores = dict(conn.execute(text("SELECT id, flakiness_score FROM test_cases")).all())
    engine.dispose()
    assert len(rows) == 258 and not tables
    assert scores["tc_257"] == 0.25 and scores["tc_000"] == scores["tc_001"] == 0.0
    assert {(bytes(r.window_state), r.avg_duration, r.last_run_at, r.total_runs)
            for r in rows} == {(window.encode(), 200, "2026-01-02 03:04:05.678901", 2)}


def test_giving_each_case_its_window_place_keeps_every_window_where_it_is(tmp_path):
    """0013 moves each window's place (bucket and slot) from the figures' row to its case's
    row, and gives one to the cases that never ran: the free slots of their file's last
    bucket, then new, empty buckets (256 slots each). The downgrade puts the places back
    beside the figures and pads every bucket to its slots, as 0012 keeps them."""
    from alembic import command
    from sqlalchemy import text

    from redline.server.intelligence import scoring

    config, engine = _database_at(tmp_path, "0012")
    window = scoring.WindowCodec()
    window.push("passed", scoring.commit_key("c1"), False, 120)
    state = bytearray(2 * scoring.SLOT)
    for slot in range(2):
        scoring.WindowCodec.put_slot(state, slot, window.encode(), 5)
    # a.spec.ts: 2 cases that ran in a bucket of 2, then 300 that never ran; and one of b
    ran = ["tc_ran0", "tc_ran1"]
    never = [f"tc_new{n:03}" for n in range(300)]
    with engine.begin() as conn:
        _team_and_project(conn)
        conn.execute(text(
            "INSERT INTO test_cases (id, project_id, identity, file_path, full_title, title, "
            "created_at, status, is_quarantined, quarantine_manual) VALUES (:id, 'proj_1', "
            ":id, :file, :id, :id, '2026-01-01 00:00:00.000000', 'new', 0, 0)"),
            [{"id": case_id, "file": "a.spec.ts"} for case_id in ran + never]
            + [{"id": "tc_b", "file": "b.spec.ts"}])
        bucket_id = conn.execute(text(
            "INSERT INTO window_buckets (project_id, file_path, part, slots, state) VALUES "
            "('proj_1', 'a.spec.ts', 0, 2, :state) RETURNING id"),
            {"state": bytes(state)}).scalar_one()
        conn.execute(text(
            "INSERT INTO test_case_windows (test_case_id, project_id, bucket_id, slot, "
            "flaky_runs, failed_runs, last_status, flakiness_score) VALUES "
            "(:id, 'proj_1', :bucket, :slot, 0, 0, 'passed', 0)"),
            [{"id": case_id, "bucket": bucket_id, "slot": slot}
             for slot, case_id in enumerate(ran)])
    command.upgrade(config, "0013")
    with engine.connect() as conn:
        places = {row[0]: (row[1], row[2]) for row in conn.execute(text(
            "SELECT id, bucket_id, slot FROM test_cases"))}
        buckets = conn.execute(text(
            "SELECT id, file_path, part, slots, length(state) FROM window_buckets "
            "ORDER BY file_path, part")).all()
        window_columns = [c[1] for c in conn.execute(text(
            "PRAGMA table_info(test_case_windows)"))]
    assert [tuple(b[1:]) for b in buckets] == [
        ("a.spec.ts", 0, 256, 2 * scoring.SLOT), ("a.spec.ts", 1, 46, 0),
        ("b.spec.ts", 0, 1, 0)]
    first, second, b_bucket = (b[0] for b in buckets)
    assert places["tc_ran0"] == (bucket_id, 0) == (first, 0) and places["tc_ran1"] == (first, 1)
    assert places["tc_new000"] == (first, 2) and places["tc_new253"] == (first, 255)
    assert places["tc_new254"] == (second, 0) and places["tc_new299"] == (second, 45)
    assert places["tc_b"] == (b_bucket, 0)
    assert len(set(places.values())) == len(places)
    assert "bucket_id" not in window_columns and "slot" not in window_columns

    command.downgrade(config, "0012")
    with engine.connect() as conn:
        kept = conn.execute(text(
            "SELECT test_case_id, bucket_id, slot FROM test_case_windows "
            "ORDER BY test_case_id")).all()
        sizes = conn.execute(text(
            "SELECT slots, length(state) FROM window_buckets ORDER BY file_path, part")).all()
        first_state = conn.execute(text("SELECT state FROM window_buckets WHERE id = :id"),
                                   {"id": first}).scalar_one()
    engine.dispose()
    assert [tuple(k) for k in kept] == [("tc_ran0", first, 0), ("tc_ran1", first, 1)]
    assert [tuple(s) for s in sizes] == [(256, 256 * scoring.SLOT), (46, 46 * scoring.SLOT),
                                         (1, scoring.SLOT)]
    assert scoring.WindowCodec.slot_window(first_state, 1) == window.encode()


def test_a_case_that_never_ran_is_stored_stable_and_reads_new(tmp_path):
    """0014: the cases stored `new` (they never ran) become `stable`, the status a first
    result gives, and read as `new` while they have no figures' row; the others keep theirs.
    The downgrade stores `new` again for the cases without a figures' row."""
    from alembic import command
    from sqlalchemy import text

    config, engine = _database_at(tmp_path, "0013")
    with engine.begin() as conn:
        _team_and_project(conn)
        bucket_id = conn.execute(text(
            "INSERT INTO window_buckets (project_id, file_path, part, slots, state) VALUES "
            "('proj_1', '', 0, 2, x'') RETURNING id")).scalar_one()
        conn.execute(text(
            "INSERT INTO test_cases (id, project_id, identity, full_title, title, created_at, "
            "status, is_quarantined, quarantine_manual, bucket_id, slot) VALUES (:id, 'proj_1', "
            ":id, :id, :id, '2026-01-01 00:00:00.000000', :status, 0, 0, :bucket, :slot)"),
            [{"id": "tc_never", "status": "new", "bucket": bucket_id, "slot": 0},
             {"id": "tc_flaky", "status": "flaky", "bucket": bucket_id, "slot": 1}])
        conn.execute(text(
            "INSERT INTO test_case_windows (test_case_id, project_id, flaky_runs, failed_runs, "
            "last_status, flakiness_score) VALUES ('tc_flaky', 'proj_1', 1, 0, 'flaky', 1)"))
    command.upgrade(config, "0014")
    with engine.connect() as conn:
        upgraded = dict(conn.execute(text("SELECT id, status FROM test_cases")).all())
    command.downgrade(config, "0013")
    with engine.connect() as conn:
        downgraded = dict(conn.execute(text("SELECT id, status FROM test_cases")).all())
    engine.dispose()
    assert upgraded == {"tc_never": "stable", "tc_flaky": "flaky"}
    assert downgraded == {"tc_never": "new", "tc_flaky": "flaky"}


def test_figures_rows_no_longer_check_their_case(tmp_path):
    """0015: a figures' row no longer has a foreign key to its case (only `apply_run` writes
    one, for a case it has just read; the project's key still removes the rows with it). The
    rows stay as they are; the downgrade removes a row whose case is gone and puts the key
    back."""
    from alembic import command
    from sqlalchemy import inspect, text

    config, engine = _database_at(tmp_path, "0014")
    with engine.begin() as conn:
        _team_and_project(conn)
        conn.execute(text(
            "INSERT INTO test_cases (id, project_id, identity, full_title, title, created_at, "
            "status, is_quarantined, quarantine_manual, bucket_id, slot) VALUES ('tc_1', "
            "'proj_1', 'tc_1', 'tc_1', 'tc_1', '2026-01-01 00:00:00.000000', 'broken', 0, 0, "
            "1, 0)"))
        conn.execute(text(
            "INSERT INTO test_case_windows (test_case_id, project_id, flaky_runs, failed_runs, "
            "last_status, flakiness_score) VALUES ('tc_1', 'proj_1', 0, 3, 'failed', 0)"))

    def case_keys() -> list:
        return [key["referred_table"] for key in
                inspect(engine).get_foreign_keys("test_case_windows")]

    before = case_keys()
    command.upgrade(config, "0015")
    after = case_keys()
    with engine.begin() as conn:  # a row without its case is no longer refused
        conn.execute(text("PRAGMA foreign_keys=ON"))
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        conn.execute(text(
            "INSERT INTO test_case_windows (test_case_id, project_id, flaky_runs, failed_runs, "
            "flakiness_score) VALUES ('tc_gone', 'proj_1', 0, 0, 0)"))
        kept = conn.execute(text("SELECT test_case_id, failed_runs, last_status FROM "
                                 "test_case_windows ORDER BY test_case_id")).all()
    command.downgrade(config, "0014")
    with engine.connect() as conn:
        downgraded = conn.execute(text("SELECT test_case_id FROM test_case_windows")).all()
    restored = case_keys()
    engine.dispose()
    assert sorted(before) == ["projects", "test_cases"]
    assert after == ["projects"]
    assert kept == [("tc_1", 3, "failed"), ("tc_gone", 0, None)]
    assert downgraded == [("tc_1",)] and sorted(restored) == ["projects", "test_cases"]


def test_window_buckets_get_their_format_version_and_lose_it_going_back(tmp_path):
    """0016: every bucket's state starts with the version of the window format (1 for the
    states stored so far, an empty one too); the stored windows read back the same through
    the codec. The downgrade takes the byte off again. On the database under test (SQLite,
    or a scratch PostgreSQL database)."""
    from alembic import command
    from sqlalchemy import text

    from redline.server.intelligence.scoring import SLOT, WindowCodec, commit_key
    from tests.conftest import PG_ADMIN_URL, TEST_DB
    from tests.support import live

    if TEST_DB == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        url = live.create_pg_database(PG_ADMIN_URL)
        assert url is not None, "PostgreSQL is not reachable"
    try:
        config = _config(url)
        command.upgrade(config, "0015")
        engine = create_engine(url)
        window = WindowCodec()
        window.push("passed", commit_key("c1"), False, 120)
        window.push("failed", commit_key("c1"), False, 80)
        unversioned = bytearray()
        for slot in range(3):
            WindowCodec.put_slot(unversioned, slot, window.encode(), 1_000 + slot)
        with engine.begin() as conn:
            moment = "'2026-01-01 00:00:00.000000'"  # (a boolean both databases read: TRUE)
            conn.execute(text(f"INSERT INTO teams (id, name, created_at, updated_at) "
                              f"VALUES ('team_1', 't', {moment}, {moment})"))
            conn.execute(text(
                "INSERT INTO projects (id, team_id, name, data_retention_days, "
                "flakiness_threshold, auto_quarantine_enabled, settings_updated_at, "
                f"created_at, updated_at) VALUES ('proj_1', 'team_1', 'p', 90, 0.3, TRUE, "
                f"{moment}, {moment}, {moment})"))
            for part, state in enumerate([bytes(unversioned), b""]):
                conn.execute(text(
                    "INSERT INTO window_buckets (project_id, file_path, part, slots, state) "
                    "VALUES ('proj_1', 'a.spec.ts', :part, 3, :state)"),
                    {"part": part, "state": state})

        def states() -> list[bytes]:
            with engine.connect() as conn:
                return [bytes(row[0]) for row in conn.execute(text(
                    "SELECT state FROM window_buckets ORDER BY part"))]

        command.upgrade(config, "0016")
        upgraded = states()
        command.downgrade(config, "0015")
        downgraded = states()
        engine.dispose()
    finally:
        if TEST_DB != "sqlite":
            live.drop_pg_database(PG_ADMIN_URL, url)
    assert upgraded == [b"\x01" + bytes(unversioned), b"\x01"]
    assert upgraded[0][:1] == WindowCodec.empty_bucket()
    slots = WindowCodec.load_bucket(upgraded[0])
    assert len(slots) == 3 * SLOT
    assert [WindowCodec.slot_window(slots, slot) for slot in range(3)] == [window.encode()] * 3
    assert WindowCodec.slot_figures(slots, 2) == (2, 100, 1_002)
    assert WindowCodec.load_bucket(upgraded[1]) == bytearray()
    assert downgraded == [bytes(unversioned), b""]
