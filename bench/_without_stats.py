"""The Redline app with the per-case statistics switched off: what `bench/ingest.py
--without-stats` imports into beside the real app, to print what the statistics cost an import
(issue 5: within 25%). Benchmarks only: a server without statistics has no flakiness, no
verdicts and no error groups."""


def create_app():
    from redline.server.app import create_app as real_app
    from redline.server.intelligence import stats

    # (runs.finish calls it through the module; the import still collects its results for it)
    stats.apply_run = lambda conn, run_id, outcomes=None: None
    return real_app()
