"""`redline demo`: a realistic sample project, so every dashboard page has something to show.

The runs are made from reports that real test runners wrote (tests/fixtures/reports: a
Playwright JSON report with two browser projects, retries, steps, annotations and stdout; a
pytest JUnit report): each run re-imports one of them with varied outcomes derived from the
real results (a real failure's error is reused when a passing test is made to fail), spread
over a few weeks and several branches with backdated timestamps. Nothing invents a report
format: the results are the parsers' own `ParsedResult`s, stored through the same services
an import uses (`runs.new_run`, `results.ingest`, `runs.refresh_counts`, `runs.finish`), so
statistics, verdicts, error groups and automatic quarantine are computed as in production.

Backdating moves the clock of *this process* (`kit.clock`) while the demo is written: run it
in its own process (the CLI does), not inside a serving one.
"""

from __future__ import annotations

import contextlib
import copy
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine

from redline.server.auth import Principal

REPORTS = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "reports"
PLAYWRIGHT = "playwright-json/playwright.json"
PYTEST = "junit/pytest-xunit1.xml"
DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "redline-demo"


@dataclass
class Scenario:
    """How one test behaves across the demo's runs (by a fragment of its full title)."""

    match: str
    flaky: float = 0.0  # chance of a `flaky` result (failed, passed on retry)
    fails: float = 0.0  # chance of a plain failure
    broken_on: tuple[str, ...] = ()  # branches where it always fails
    regression: tuple[int, int] | None = None  # days ago (from, to) when main broke it
    only_on: tuple[str, ...] = ()  # a test that exists only on these branches (a new one)


PLAYWRIGHT_SCENARIOS = [
    Scenario("flaky: fails on the first attempt only", flaky=0.35, fails=0.08),
    Scenario("fails on an expect", fails=0.12),
    Scenario("Serial group > second step fails", fails=0.06),
    Scenario("throws an error", broken_on=("feature/checkout-v2",), regression=(13, 10)),
    Scenario("fails inside a nested step", regression=(1, -1)),
    Scenario("Checkout > without a card > pays", flaky=0.15),
    # a new test on a feature branch that fails every time there: broken, not flaky
    Scenario("expected to fail but passes", fails=1.0, only_on=("feature/checkout-v2",)),
]
PYTEST_SCENARIOS = [Scenario("test_fails", fails=0.3), Scenario("test_error_in_setup",
                                                                  fails=0.1, flaky=0.1)]
BRANCHES = [  # name, first day ago, last day ago, runs a day
    ("main", None, 0, 3),
    ("fix/flaky-login", 16, 13, 2),
    ("feature/checkout-v2", 8, 2, 2),
    ("release/1.4", 5, 4, 2),
]
SOURCES = ("github_action", "github_action", "cli", "reporter", "api")


class DemoClock:
    """Sets the time `kit.clock.utcnow()` answers in this process, then restores it."""

    def __init__(self):
        self.moment: datetime | None = None

    @contextlib.contextmanager
    def installed(self):
        from redline.server.kit import clock

        real = clock.datetime
        holder = self

        class Shifted(real):  # type: ignore[misc, valid-type]
            @classmethod
            def now(cls, tz=None):
                if holder.moment is None:
                    return real.now(tz)
                return holder.moment.replace(tzinfo=UTC) if tz else holder.moment

        clock.datetime = Shifted
        try:
            yield self
        finally:
            clock.datetime = real


def _load(name: str):
    from redline.server.imports.parsers import parse_report

    if not (REPORTS / name).exists():
        raise FileNotFoundError(f"The demo is built from the report fixtures of a source "
                                f"checkout; {REPORTS / name} is missing")
    with (REPORTS / name).open("rb") as stream:
        report = parse_report(stream, "auto", Path(name).name)
        return list(report.results), report.metadata


def _pool_of_errors(results) -> list:
    return [r.error for r in results if r.error is not None and r.status == "failed"]


def _vary(results, scenarios: list[Scenario], branch: str, days_ago: int, rng: random.Random,
          errors: list, slowdown: float):
    """One run's results: the real ones, with outcomes and durations varied."""
    varied = []
    for original in results:
        result = copy.deepcopy(original)
        result.duration_ms = int(max(1, original.duration_ms) * 25 * slowdown
                                 * rng.uniform(0.75, 1.45))
        if result.status == "skipped":
            varied.append(result)
            continue
        scenario = next((s for s in scenarios if s.match in result.full_title), None)
        if scenario is not None and scenario.only_on and branch not in scenario.only_on:
            continue
        outcome = "passed"
        if scenario is not None:
            roll = rng.random()
            regressed = (scenario.regression is not None and branch == "main"
                         and scenario.regression[0] >= days_ago > scenario.regression[1])
            if branch in scenario.broken_on or regressed:
                outcome = "failed"
            elif roll < scenario.flaky:
                outcome = "flaky"
            elif roll < scenario.flaky + scenario.fails:
                outcome = "failed"
        error = original.error or (rng.choice(errors) if errors else None)
        if outcome == "passed":
            result.status, result.error, result.attempt, result.retries = "passed", None, 1, 0
        elif outcome == "failed":
            result.status, result.error = "failed", error
            result.attempt, result.retries = 3, 2
        else:
            result.status, result.error, result.attempt, result.retries = "flaky", error, 2, 1
        varied.append(result)
    return varied


def _engine(target) -> tuple[Engine, bool]:
    if isinstance(target, Engine):
        return target, False
    from redline.server.db import make_engine, migrate

    if str(target).startswith(("http://", "https://")):
        raise ValueError("fill_demo writes to the database (it backdates runs, which the API "
                         "cannot): pass an Engine or a database URL, not a server URL")
    migrate(str(target))
    return make_engine(str(target)), True


def fill_demo(target, *, email: str = DEMO_EMAIL, password: str = DEMO_PASSWORD,
              days: int = 21, seed: int = 7, now: datetime | None = None,
              log=lambda message: None, settings=None) -> dict:
    """Fill a database (an Engine, or a database URL: migrated first) with a demo team:
    a Playwright project with several branches and `days` days of runs, and a pytest project.
    The demo user is created (or reused: then `password` must be theirs). Returns what was
    made: user, team, project ids and counts."""
    from redline.server.accounts import repository as accounts_repo
    from redline.server.accounts import service as accounts
    from redline.server.db import WRITE
    from redline.server.intelligence import service as intelligence
    from redline.server.kit import passwords
    from redline.server.kit.clock import utcnow
    from redline.server.kit.pagination import PageRequest
    from redline.server.projects import service as projects
    from redline.server.results import service as results_service
    from redline.server.runs import service as runs
    from redline.server.teams import service as teams

    engine, own_engine = _engine(target)
    rng = random.Random(seed)
    clock = DemoClock()
    end = now or utcnow()
    page = PageRequest(50, 0, "demo", b"demo")

    def tx():
        return engine.connect().execution_options(**WRITE)

    with tx() as conn, conn.begin():
        user = accounts_repo.find_user_by_email(conn, email)
        if user is None:
            user = accounts.create_user(conn, email, password, "Demo User")
        elif not passwords.verify_password(user.password_hash, password):
            raise ValueError(f"{email} exists with another password: pass its password")
        principal = Principal("user", user.id)
        team = teams.create_team(conn, principal, "Demo team")
        web = projects.create_project(conn, principal, team["id"], "Storefront (Playwright)")
        api = projects.create_project(conn, principal, team["id"], "Payments API (pytest)")

    playwright_results, playwright_meta = _load(PLAYWRIGHT)
    pytest_results, _ = _load(PYTEST)
    made = {"runs": 0, "results": 0}

    def import_run(project_id: str, source_results, scenarios, branch: str, at: datetime,
                   commit: str, build: int, finish: bool = True, title: str | None = None):
        days_ago = (end - at).days
        slowdown = 1 + 0.25 * (days - days_ago) / max(days, 1)  # the suite slows down a bit
        varied = _vary(source_results, scenarios, branch, days_ago, rng,
                       _pool_of_errors(source_results), slowdown)
        if not finish:
            varied = varied[: len(varied) // 2]
        fields = {"branch": branch, "commit_sha": commit, "source": rng.choice(SOURCES),
                  "commit_message": rng.choice(COMMIT_MESSAGES),
                  "commit_author": rng.choice(AUTHORS), "ci_provider": "github",
                  "ci_build_id": str(build),
                  "ci_build_url": f"https://ci.example.com/demo/builds/{build}",
                  "run_title": title or f"#{build} {branch}", "status": "running"}
        if source_results is playwright_results:
            fields["playwright_version"] = playwright_meta.get("playwrightVersion")
            fields["workers"] = playwright_meta.get("workers")
        with tx() as conn, conn.begin():
            clock.moment = at
            run_id = runs.new_run(conn, project_id, fields)
            ids, duration = results_service.ingest(conn, run_id, project_id, varied)
            clock.moment = at + timedelta(milliseconds=duration // 2)
            runs.refresh_counts(conn, run_id, added_duration=duration // 2)
            if finish:
                runs.finish(conn, run_id)
        made["runs"] += 1
        made["results"] += len(ids)

    build = 4100
    with clock.installed():
        schedule = []
        for branch, first, last, per_day in BRANCHES:
            first = days - 1 if first is None else min(first, days - 1)
            for days_ago in range(first, last - 1, -1):
                for slot in range(per_day):
                    hour = 8 + rng.randint(0, 9) + slot
                    at = (end - timedelta(days=days_ago)).replace(
                        hour=min(hour, 22), minute=rng.randint(0, 59), second=rng.randint(0, 59))
                    if at >= end:
                        at = end - timedelta(minutes=30 + 20 * slot)
                    schedule.append((at, branch))
        schedule.sort()
        commits: dict[str, str] = {}
        for at, branch in schedule:
            # every few runs re-run the same commit: a pass and a fail on one commit is
            # flakiness evidence, as in real CI
            if branch not in commits or rng.random() > 0.25:
                commits[branch] = f"{rng.getrandbits(160):040x}"
            build += 1
            import_run(web["id"], playwright_results, PLAYWRIGHT_SCENARIOS, branch, at,
                       commits[branch], build)
        for days_ago in range(days - 1, -1, -1):
            at = (end - timedelta(days=days_ago)).replace(hour=7, minute=15)
            if at < end:
                build += 1
                import_run(api["id"], pytest_results, PYTEST_SCENARIOS, "main", at,
                           f"{rng.getrandbits(160):040x}", build, title=f"nightly #{build}")
        # one run still in progress, for the live runs list
        build += 1
        import_run(web["id"], playwright_results, PLAYWRIGHT_SCENARIOS, "main",
                   end - timedelta(minutes=2), f"{rng.getrandbits(160):040x}", build,
                   finish=False, title=f"#{build} main (in progress)")
        clock.moment = end - timedelta(hours=3)
        with tx() as conn, conn.begin():
            found = intelligence.list_cases(conn, principal, web["id"], None, None, None,
                                            "second step fails", "flakiness", page)["data"]
            for case in found[:1]:
                intelligence.quarantine(conn, principal, case["id"], web["id"], True,
                                        "times out waiting for the serial fixture",
                                        "checkout team", None)
        clock.moment = None
    if settings is not None:
        made["screenshots"] = _attach_screenshots(engine, settings, web["id"])
    log(f"demo: {made['runs']} runs, {made['results']} results")
    if own_engine:
        engine.dispose()
    return {"email": email, "userId": user.id, "teamId": team["id"],
            "projectIds": [web["id"], api["id"]], **made}


COMMIT_MESSAGES = [
    "Checkout: keep the saved card selected after a failed payment",
    "Bump @playwright/test", "Login: retry the SSO redirect once",
    "Cart: round totals per line, not per order", "Fix the receipt layout on narrow screens",
    "Refactor the payment client", "Add a test for the empty cart",
    "CI: shard the browser tests", "Search: debounce suggestions",
]
AUTHORS = ["Ada Lovelace", "Grace Hopper", "Linus Torvalds", "Margaret Hamilton",
           "Ken Thompson"]



def screenshot_png(width: int = 480, height: int = 300, seed: int = 0) -> bytes:
    """A generated stand-in for a failure screenshot (a page with a header, a form and a red
    error banner): a real PNG, encoded here, so the demo's artifact pages have images."""
    import struct
    import zlib

    rows = []
    for y in range(height):
        row = bytearray([0])
        for x in range(width):
            if y < 40:
                pixel = (31, 41, 55)  # header bar
            elif 60 < y < 90 and 30 < x < width - 30:
                pixel = (220, 38, 38)  # the error banner
            elif 120 < y < 250 and 60 < x < width - 60 and (y // 30) % 2 == 0:
                pixel = (226, 232, 240)  # form fields
            else:
                pixel = (248, 250, 252)
            if (x + y + seed) % 97 == 0:
                pixel = (203, 213, 225)
            row += bytes(pixel)
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"".join(rows), 6)) + chunk(b"IEND", b""))


def _attach_screenshots(engine: Engine, settings, project_id: str, runs_to_cover: int = 5) -> int:
    """A screenshot for each failed test of the project's latest completed runs, stored in
    the server's blob store as an upload would store it."""
    import hashlib
    import io

    from sqlalchemy import insert, select

    from redline.server.artifacts.blobs import blob_store
    from redline.server.db import WRITE
    from redline.server.kit.clock import utcnow
    from redline.server.kit.ids import new_id
    from redline.server.tables import artifacts, runs, test_results

    store = blob_store(settings)
    image = screenshot_png()
    digest = hashlib.sha256(image).hexdigest()
    count = 0
    with engine.connect().execution_options(**WRITE) as conn, conn.begin():
        run_ids = conn.execute(select(runs.c.id).where(
            runs.c.project_id == project_id, runs.c.status == "failed")
            .order_by(runs.c.created_at.desc()).limit(runs_to_cover)).scalars().all()
        failed = conn.execute(select(test_results.c.id, test_results.c.run_id).where(
            test_results.c.run_id.in_(run_ids), test_results.c.status == "failed")).all()
        for test_id, run_id in failed:
            artifact_id = new_id("artifact")
            key = f"{project_id}/{run_id}/{artifact_id}"
            store.put(key, io.BytesIO(image))
            conn.execute(insert(artifacts).values(
                id=artifact_id, project_id=project_id, run_id=run_id, test_id=test_id,
                type="screenshot", file_name="test-failed-1.png", storage_key=key,
                file_size=len(image), mime_type="image/png", sha256=digest,
                test_status="failed", created_at=utcnow()))
            count += 1
    return count
