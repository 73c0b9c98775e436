"""Ingestion benchmark: importing JUnit XML and Playwright JSON reports of 1k, 10k and 100k
tests over HTTP, beside the raw insert rate of the same rows with the database driver alone.

    .venv/bin/python bench/ingest.py [--db sqlite|postgres|both] [--sizes 1000,10000,100000]

Prints, per database: end-to-end import time (median of 3 for 1k and 10k, one run for 100k),
results per second, the ratio to the driver's raw rate, and the server process's peak memory
(VmHWM) after the 100k import. Goals (issue 4): a 10k-test report in under 0.5 s on SQLite,
at least 20% of the raw driver rate, peak server memory for 100k under 300 MB.

With `--without-stats`, each database is measured a second time on a server whose per-case
statistics are switched off (`bench/_without_stats.py`), and the import times with and
without them are printed side by side (issue 5: within 25%).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from bench._common import Server, machine_description, scratch_database, temporary_directory  # noqa: E402,E501
from tests.imports.synthetic import junit_report, playwright_report  # noqa: E402

GOAL_10K_SQLITE_S = 0.5
GOAL_RATIO = 0.20
GOAL_PEAK_MB = 300


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def raw_rate(kind: str, url: str, rows: int) -> float:
    """Rows per second the driver alone inserts into a table shaped like test_results (with
    its indexes), the ceiling for ingestion."""
    now = "2026-11-23 10:00:00.000000"
    data = [(f"test_{i:026d}", "run_x", "proj_x", f"tc_{i:026d}", None, f"test {i}",
             f"Suite > test {i}", f"tests/file_{i // 50}.py", i % 400, None,
             "failed" if i % 10 == 1 else "passed", i % 100, 0, 1, False, "[]", "[]",
             '{"message":"AssertionError"}' if i % 10 == 1 else None, "[]", "log line", "",
             "{}", now) for i in range(rows)]
    ddl = """CREATE TABLE raw_results (id varchar(40) PRIMARY KEY, run_id varchar(40),
        project_id varchar(40), test_case_id varchar(40), suite_id varchar(40), title text,
        full_title text, file_path varchar(1000), line_number int, variant varchar(255),
        status varchar(10), duration bigint, retries int, attempt int, is_flaky boolean,
        tags text, annotations text, error text, steps text, stdout text, stderr text,
        extra text, created_at timestamp)"""
    indexes = ["CREATE INDEX raw_a ON raw_results (run_id, status)",
               "CREATE INDEX raw_b ON raw_results (test_case_id, created_at)",
               "CREATE INDEX raw_c ON raw_results (project_id, created_at)",
               "CREATE INDEX raw_d ON raw_results (suite_id)"]
    if kind == "sqlite":
        path = url.removeprefix("sqlite:///") + ".raw"
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(ddl)
        for statement in indexes:
            conn.execute(statement)
        start = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany(f"INSERT INTO raw_results VALUES ({', '.join('?' * 23)})", data)
        conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
        conn.close()
        os.unlink(path)
        return rows / elapsed
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        conn.execute(ddl)
        for statement in indexes:
            conn.execute(statement)
        conn.commit()
        start = time.perf_counter()
        with conn.cursor() as cursor, cursor.copy("COPY raw_results FROM STDIN") as copy:
            for row in data:
                copy.write_row(row)
        conn.commit()
        elapsed = time.perf_counter() - start
        conn.execute("DROP TABLE raw_results")
        conn.commit()
    return rows / elapsed


def bench_database(kind: str, sizes: list[int], stats: bool = True) -> list[dict]:
    workdir = temporary_directory(f"redline-ingest-{kind}-")
    url, drop = scratch_database(kind, workdir)
    target = "redline.server.app:create_app" if stats else "_without_stats:create_app"
    server = Server("redline", target, factory=True, env={
        "REDLINE_DATABASE_URL": url, "REDLINE_DATA_DIR": str(workdir / "data"),
        "REDLINE_RATE_LIMIT_ENABLED": "false", "REDLINE_MAX_IMPORT_BYTES": str(500 << 20)})
    rows = []
    try:
        server.start(workdir)
        server.wait_ready("/api/health")
        setup = httpx.post(f"{server.url}/api/setup", json={
            "email": "bench@example.com", "password": "benchmark-password"}).json()
        client = httpx.Client(base_url=server.url, timeout=600,
                              headers={"X-API-Key": setup["apiKey"]["key"]})
        for fmt, build, content_type in (("junit", junit_report, "application/xml"),
                                         ("playwright-json", playwright_report,
                                          "application/json")):
            for size in sizes:
                body = build(size)
                repeats = 1 if size >= 100_000 else 3
                times = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    response = client.post("/api/runs/import", content=body,
                                           headers={"content-type": content_type})
                    times.append(time.perf_counter() - start)
                    assert response.status_code == 201, response.text[:500]
                    assert response.json()["imported"]["tests"] == size
                seconds = statistics.median(times)
                rows.append({"db": kind, "stats": stats, "format": fmt, "tests": size,
                             "megabytes": len(body) / 1e6, "seconds": seconds,
                             "per_second": size / seconds})
        peak = peak_rss_mb(server.process.pid)
        client.close()
    finally:
        server.stop()
    baseline = raw_rate(kind, url, max(sizes))
    drop()
    for row in rows:
        row["raw_per_second"] = baseline
        row["ratio"] = row["per_second"] / baseline
        row["peak_mb"] = peak
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--without-stats", action="store_true",
                        help="also measure a server with the per-case statistics off")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    print(f"ingest benchmark on {machine_description()}")
    results = []
    for kind in kinds:
        try:
            results += bench_database(kind, sizes)
            if args.without_stats:
                results += bench_database(kind, sizes, stats=False)
        except Exception as exc:  # PostgreSQL missing on a laptop: say so, go on
            print(f"{kind}: skipped ({exc})")
    without = {(r["db"], r["format"], r["tests"]): r for r in results if not r["stats"]}
    results = [r for r in results if r["stats"]]
    print(f"\n{'db':8} {'format':16} {'tests':>7} {'MB':>6} {'seconds':>8} {'results/s':>10} "
          f"{'raw/s':>9} {'ratio':>6}")
    for r in results:
        print(f"{r['db']:8} {r['format']:16} {r['tests']:7d} {r['megabytes']:6.1f} "
              f"{r['seconds']:8.3f} {r['per_second']:10.0f} {r['raw_per_second']:9.0f} "
              f"{r['ratio']:6.2f}")
    for kind in kinds:
        mine = [r for r in results if r["db"] == kind]
        if not mine:
            continue
        print(f"\n{kind}: server peak memory (VmHWM) after all imports: {mine[0]['peak_mb']:.0f} MB"
              f" (goal < {GOAL_PEAK_MB} MB)")
        for r in mine:
            if r["tests"] == 10_000:
                goal = f" (goal < {GOAL_10K_SQLITE_S} s)" if kind == "sqlite" else ""
                print(f"{kind}: 10k {r['format']}: {r['seconds']:.3f} s{goal}, "
                      f"{r['ratio']:.0%} of the raw driver rate (goal >= {GOAL_RATIO:.0%})")
        for r in mine:
            other = without.get((kind, r["format"], r["tests"]))
            if other is not None:
                overhead = r["seconds"] / other["seconds"] - 1
                print(f"{kind}: {r['tests'] // 1000}k {r['format']}: {r['seconds']:.3f} s with "
                      f"the statistics, {other['seconds']:.3f} s without: {overhead:+.0%} "
                      f"(issue 5 goal <= +25%)")
    if args.json:
        Path(args.json).write_text(json.dumps(results + list(without.values()), indent=2))


if __name__ == "__main__":
    main()
