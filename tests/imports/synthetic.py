"""Large synthetic reports, shaped like the real fixtures in tests/fixtures/reports, for memory
tests and benchmarks (1k / 10k / 100k tests). They are generated, never stored.

    junit_report(n_tests, ...) -> bytes       pytest-style JUnit XML (xunit1 attributes)
    playwright_report(n_tests, ...) -> bytes  Playwright JSON reporter output, two projects
    junit_report_chunks / playwright_report_chunks -> the same bytes, a piece at a time
    write_report(path, chunks)                writes them to a file without holding them

`python -m tests.imports.synthetic [N ...]` prints parse time (median of 5, wall clock and CPU)
and peak memory for 1k/10k/100k tests (or the sizes given).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from xml.sax.saxutils import escape, quoteattr

TESTS_PER_FILE = 50


def junit_report(n_tests: int, *, failure_every: int = 10, skip_every: int = 25,
                 rerun_every: int = 0, output_lines: int = 1) -> bytes:
    """A pytest-style JUnit report with `n_tests` tests: a failure every `failure_every`, a
    skip every `skip_every`, and (rerun_every > 0) a flaky test whose failed first attempt is
    written as pytest-rerunfailures does, as an extra empty <testcase> before the final one."""
    return b"".join(junit_report_chunks(n_tests, failure_every=failure_every, skip_every=skip_every,
                                        rerun_every=rerun_every, output_lines=output_lines))


def junit_report_chunks(n_tests: int, *, failure_every: int = 10, skip_every: int = 25,
                        rerun_every: int = 0, output_lines: int = 1) -> Iterator[bytes]:
    """junit_report's bytes, a piece at a time (to write a big report without holding it)."""
    failures = sum(1 for i in range(n_tests) if failure_every and i % failure_every == 1)
    skipped = sum(1 for i in range(n_tests) if not (failure_every and i % failure_every == 1)
                  and skip_every and i % skip_every == 2)
    yield (f'<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests">'
           f'<testsuite name="pytest" errors="0" failures="{failures}" skipped="{skipped}" '
           f'tests="{n_tests}" time="{n_tests / 1000:.3f}" timestamp="2026-11-23T10:00:00.000000+00:00" '
           f'hostname="ci-runner">').encode()
    cases: list[str] = []
    for i in range(n_tests):
        module = f"tests/test_module_{i // TESTS_PER_FILE}"
        classname = module.replace("/", ".")
        name = f"test_case_{i}[param-{i % 7}]"
        attributes = (f'classname={quoteattr(classname)} name={quoteattr(name)} '
                      f'file="{module}.py" line="{(i % TESTS_PER_FILE) * 4 + 3}" time="0.00{i % 10}"')
        output = "".join(f"log line {n} of test {i}\n" for n in range(output_lines))
        system_out = f"<system-out>{escape(output)}</system-out>" if output else ""
        if rerun_every and i % rerun_every == 0:
            cases.append(f"<testcase {attributes}>{system_out}</testcase>")  # the rerun placeholder
        if failure_every and i % failure_every == 1:
            body = (f'<failure message="AssertionError: assert {i} == {i + 1}">def {name}():\n'
                    f'&gt;       assert {i} == {i + 1}\nE       AssertionError\n\n{module}.py:{i % 40 + 4}: '
                    f'AssertionError</failure>{system_out}')
        elif skip_every and i % skip_every == 2:
            body = f'<skipped type="pytest.skip" message="not on this platform">{module}.py:3: not on this platform</skipped>'
        else:
            body = system_out
        cases.append(f"<testcase {attributes}>{body}</testcase>")
        if len(cases) >= 1000:
            yield "".join(cases).encode()
            cases = []
    yield ("".join(cases) + "</testsuite></testsuites>").encode()


def _playwright_result(i: int, retry: int, status: str) -> dict:
    result = {
        "workerIndex": i % 4, "parallelIndex": i % 4, "status": status, "duration": 20 + i % 50,
        "errors": [], "stdout": [{"text": f"test {i} attempt {retry + 1}\n"}], "stderr": [],
        "retry": retry, "startTime": "2026-11-23T10:00:00.000Z", "annotations": [], "attachments": [],
        "steps": [{"title": "open the page", "duration": 5,
                   "steps": [{"title": "resolve the url", "duration": 1}]}],
    }
    if status == "failed":
        message = f"Error: expect(received).toBe(expected)\n\nExpected: {i + 1}\nReceived: {i}"
        location = {"file": "/ci/repo/tests/file.spec.ts", "line": 10 + i % 40, "column": 5}
        result["error"] = {"message": message, "stack": f"{message}\n    at /ci/repo/tests/file.spec.ts:{10 + i % 40}:5",
                           "location": location}
        result["errors"] = [{"message": message, "location": location}]
        result["errorLocation"] = location
    return result


def playwright_report(n_tests: int, *, failure_every: int = 10, flaky_every: int = 15,
                      skip_every: int = 25) -> bytes:
    """A Playwright JSON report with `n_tests` results: specs in files of nested describes,
    each run in two projects ("chromium", "firefox"), some failing (3 attempts), flaky (failed,
    then passed) or skipped."""
    return b"".join(playwright_report_chunks(n_tests, failure_every=failure_every,
                                             flaky_every=flaky_every, skip_every=skip_every))


def playwright_report_chunks(n_tests: int, *, failure_every: int = 10, flaky_every: int = 15,
                             skip_every: int = 25) -> Iterator[bytes]:
    """playwright_report's bytes (json.dumps of the whole report), one file suite at a time."""
    projects = ("chromium", "firefox")
    config = {"rootDir": "/ci/repo/tests", "version": "1.65.1", "workers": 4, "shard": None,
              "metadata": {"actualWorkers": 4},
              "projects": [{"id": p, "name": p} for p in projects]}
    stats = {"startTime": "2026-11-23T10:00:00.000Z", "duration": 1234.5, "expected": 0, "skipped": 0,
             "unexpected": 0, "flaky": 0}
    yield f'{{"config": {json.dumps(config)}, "suites": ['.encode()
    n_specs = max(1, n_tests // len(projects))
    n_files = 0
    spec_index = 0
    while spec_index < n_specs:
        file_name = f"area_{n_files}/feature.spec.ts"
        specs = []
        for _ in range(min(TESTS_PER_FILE, n_specs - spec_index)):
            i = spec_index
            tests = []
            for project in projects:
                if skip_every and i % skip_every == 2:
                    results, status = [{"workerIndex": -1, "parallelIndex": -1, "status": "skipped", "duration": 0,
                                        "errors": [], "stdout": [], "stderr": [], "retry": 0,
                                        "startTime": "2026-11-23T10:00:00.000Z", "annotations": [],
                                        "attachments": []}], "skipped"
                elif failure_every and i % failure_every == 1:
                    results, status = [_playwright_result(i, r, "failed") for r in range(3)], "unexpected"
                elif flaky_every and i % flaky_every == 3:
                    results = [_playwright_result(i, 0, "failed"), _playwright_result(i, 1, "passed")]
                    status = "flaky"
                else:
                    results, status = [_playwright_result(i, 0, "passed")], "expected"
                tests.append({"timeout": 30000, "annotations": [], "expectedStatus": "skipped" if status == "skipped" else "passed",
                              "projectId": project, "projectName": project, "results": results, "status": status})
            specs.append({"title": f"does thing {i}", "ok": True, "tags": ["smoke"] if i % 3 == 0 else [],
                          "tests": tests, "id": f"spec-{i}", "file": file_name, "line": 3 + (i % TESTS_PER_FILE) * 5,
                          "column": 5})
            spec_index += 1
        suite = {"title": file_name, "file": file_name, "line": 0, "column": 0, "specs": [],
                 "suites": [{"title": "Feature", "file": file_name, "line": 2, "column": 6, "specs": [],
                             "suites": [{"title": "when logged in", "file": file_name, "line": 3, "column": 8,
                                         "specs": specs}]}]}
        yield (", " if n_files else "").encode() + json.dumps(suite).encode()
        n_files += 1
    yield f'], "errors": [], "stats": {json.dumps(stats)}}}'.encode()


def write_report(path, chunks: Iterable[bytes]) -> int:
    """Write a report's chunks to `path`; its size in bytes."""
    size = 0
    with open(path, "wb") as out:
        for chunk in chunks:
            out.write(chunk)
            size += len(chunk)
    return size


def _benchmark(sizes: tuple[int, ...] = (1_000, 10_000, 100_000), repeats: int = 5) -> None:  # pragma: no cover - a tool
    """Parse time, median of `repeats` runs with tracemalloc off: wall clock, and the process's
    CPU time (steadier on a busy machine); then the tracemalloc peak of one more run."""
    import io
    import statistics
    import time
    import tracemalloc

    from redline.server.imports.parsers import parse_report

    for n in sizes:
        for name, build in (("junit", junit_report), ("playwright-json", playwright_report)):
            data = build(n)
            wall, cpu = [], []
            for _ in range(repeats):
                started, started_cpu = time.perf_counter(), time.process_time()
                count = sum(1 for _ in parse_report(io.BytesIO(data)).results)
                wall.append(time.perf_counter() - started)
                cpu.append(time.process_time() - started_cpu)
            tracemalloc.start()
            sum(1 for _ in parse_report(io.BytesIO(data)).results)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            print(f"{name:16} {n:>7} tests  {len(data) / 1e6:5.1f} MB  {count:>7} results  "
                  f"median of {repeats}: {statistics.median(wall) * 1000:7.1f} ms wall, "
                  f"{statistics.median(cpu) * 1000:7.1f} ms cpu  peak {peak / 1e6:4.1f} MB (tracemalloc)",
                  flush=True)


if __name__ == "__main__":  # pragma: no cover
    import sys

    _benchmark(tuple(int(n) for n in sys.argv[1:]) or (1_000, 10_000, 100_000))
