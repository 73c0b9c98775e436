"""Hostile JUnit XML (RELIABILITY.md section 10): refused with ReportParseError, in well under a
second, without memory growth and without a single outbound connection.

Two layers refuse these files, and each is tested on its own: parse_report looks at the
prolog before lxml does and refuses any DOCTYPE; behind it, the lxml parser runs with
entities, DTD loading and network off, refuses a DOCTYPE it sees (one hidden after 64 KB of
comments) and any XInclude element, and caps the nesting depth.
"""

from __future__ import annotations

import http.server
import io
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc

import pytest

from redline.server.imports.parsers import ReportParseError, parse_report
from redline.server.imports.parsers.junit import parse_junit

SUITE = b'<testsuites><testsuite name="s" tests="1"><testcase classname="c" name="%s"/></testsuite></testsuites>'


@pytest.fixture(scope="module")
def listener():
    """A local HTTP server that counts every request: the parser must never call it (one for
    the module: its request list must stay empty throughout)."""
    requests = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # the http.server API names it so
            requests.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'<!ENTITY remote "fetched">')

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()
    server.server_close()


def billion_laughs() -> bytes:
    entities = b'<!ENTITY lol0 "lol">' + b"".join(
        b'<!ENTITY lol%d "%s">' % (i, b"&lol%d;" % (i - 1) * 10) for i in range(1, 10))
    return (b'<?xml version="1.0"?>\n<!DOCTYPE lolz [' + entities + b']>\n'
            + b'<testsuites name="&lol9;"><testsuite name="s"><testcase classname="c" name="&lol9;">&lol9;'
            + b"</testcase></testsuite></testsuites>")


def quadratic_blowup() -> bytes:
    return (b'<?xml version="1.0"?>\n<!DOCTYPE kaboom [<!ENTITY a "' + b"a" * 50_000 + b'">]>\n'
            + b'<testsuites name="' + b"&a;" * 50_000 + b'"><testsuite name="s"><testcase classname="c" name="x">'
            + b"&a;" * 50_000 + b"</testcase></testsuite></testsuites>")


def external_entity(url: str) -> bytes:
    return (b'<?xml version="1.0"?>\n<!DOCTYPE t [<!ENTITY xxe SYSTEM "%s">]>\n' % url.encode()
            + SUITE % b"&xxe;")


def external_dtd(url: str) -> bytes:
    return b'<?xml version="1.0"?>\n<!DOCTYPE testsuites SYSTEM "%s/evil.dtd">\n' % url.encode() + SUITE % b"x"


def parameter_entity(url: str) -> bytes:
    return (b'<?xml version="1.0"?>\n<!DOCTYPE t [<!ENTITY %% remote SYSTEM "%s/evil.dtd"> %%remote;]>\n'
            % url.encode() + SUITE % b"&remote;")


def xinclude() -> bytes:
    return (b'<testsuites xmlns:xi="http://www.w3.org/2001/XInclude"><testsuite name="s">'
            b'<testcase classname="c" name="x"><system-out><xi:include href="file:///etc/passwd" parse="text"/>'
            b"</system-out></testcase></testsuite></testsuites>")


def too_deep(levels: int = 100_000) -> bytes:
    return b"<testsuites>" + b"<testsuite>" * levels + b"</testsuite>" * levels + b"</testsuites>"


def hidden_after_comments(document: bytes) -> bytes:
    """The same DOCTYPE, after 70 KB of comments: past the prolog check's window."""
    declaration, rest = document.split(b"\n", 1)
    return declaration + b"\n<!--" + b"x" * 70_000 + b"-->\n" + rest


def attacks(url: str) -> dict[str, bytes]:
    return {
        "billion laughs": billion_laughs(),
        "quadratic blowup": quadratic_blowup(),
        "external entity file:///etc/passwd": external_entity("file:///etc/passwd"),
        "external entity over http": external_entity(f"{url}/secret"),
        "external DTD": external_dtd(url),
        "parameter entity": parameter_entity(url),
        "XInclude": xinclude(),
        "too deep": too_deep(),
        "billion laughs after 70 KB of comments": hidden_after_comments(billion_laughs()),
        "quadratic blowup after 70 KB of comments": hidden_after_comments(quadratic_blowup()),
        "external entity after 70 KB of comments": hidden_after_comments(external_entity("file:///etc/passwd")),
        "external DTD after 70 KB of comments": hidden_after_comments(external_dtd(url)),
        "UTF-16 billion laughs": billion_laughs().decode().replace('version="1.0"', 'version="1.0" encoding="UTF-16"')
        .encode("utf-16"),
    }


ATTACK_NAMES = list(attacks("http://127.0.0.1:9"))


def _refused_quickly(parse) -> ReportParseError:
    started = time.perf_counter()
    with pytest.raises(ReportParseError) as caught:
        list(parse())
    assert time.perf_counter() - started < 1.0
    return caught.value


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_attack_is_refused_fast_with_a_position(name, listener):
    url, requests = listener
    document = attacks(url)[name]
    tracemalloc.start()
    error = _refused_quickly(lambda: parse_report(io.BytesIO(document), filename="report.xml").results)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert error.line is not None
    assert peak < 5 * 1024 * 1024 + 3 * len(document)
    assert requests == []
    assert "root:" not in str(error)  # nothing of /etc/passwd in the answer


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_lxml_layer_alone_refuses_the_attack(name, listener):
    """Without parse_report's prolog check, the lxml layer still refuses each file."""
    url, requests = listener
    document = attacks(url)[name]
    _refused_quickly(lambda: parse_junit(io.BytesIO(document), {}))
    assert requests == []


def test_too_deep_names_the_limit():
    error = _refused_quickly(lambda: parse_report(io.BytesIO(too_deep(200))).results)
    assert "nested deeper than" in error.message


def test_rss_stays_flat_and_no_connection_is_made(listener):
    """Resident memory (libxml2's allocations included, which tracemalloc cannot see) of a
    fresh process that parses every attack: it grows by less than 50 MB."""
    url, requests = listener
    script = textwrap.dedent(f"""
        import io, sys
        sys.path.insert(0, {str(__import__("pathlib").Path(__file__).resolve().parents[2])!r})
        from tests.imports.test_xml_safety import attacks
        from redline.server.imports.parsers import ReportParseError, parse_report
        from redline.server.imports.parsers.junit import parse_junit

        def high_water_kb():
            for line in open("/proc/self/status"):
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])

        documents = attacks({url!r})
        before = high_water_kb()
        for name, document in documents.items():
            for parse in (lambda d: parse_report(io.BytesIO(d)).results, lambda d: parse_junit(io.BytesIO(d), {{}})):
                try:
                    list(parse(document))
                except ReportParseError:
                    pass
                else:
                    sys.exit(f"not refused: {{name}}")
        print(high_water_kb() - before)
    """)
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    grown_kb = int(done.stdout.strip())
    assert grown_kb < 50 * 1024
    assert requests == []


def test_a_plain_report_still_parses():
    """The guards refuse hostile files, not ordinary ones: an XML declaration, comments and a
    processing instruction are fine."""
    document = (b'<?xml version="1.0" encoding="UTF-8"?>\n<!-- written by a tool -->\n<?tool hint?>\n'
                + SUITE % b"ok")
    assert [r.title for r in parse_report(io.BytesIO(document)).results] == ["ok"]
