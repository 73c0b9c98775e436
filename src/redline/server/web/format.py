"""Template filters: durations, times, commits, counts (presentation only, no rules)."""

from __future__ import annotations

from datetime import UTC, datetime

from markupsafe import Markup

from redline.run_display import run_label, verdict_note
from redline.server.kit.clock import parse_iso, utcnow


def duration(ms: float | None) -> str:
    """1234 -> '1.2 s', 95000 -> '1 m 35 s'."""
    if ms is None:
        return "–"
    ms = int(ms)
    if ms < 1000:
        return f"{ms} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} m {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} m"


def _parse(value) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    return parse_iso(str(value))


def ago(value) -> str:
    moment = _parse(value)
    if moment is None:
        return "never"
    return _ago(moment)


def _ago(moment: datetime) -> str:
    seconds = (utcnow() - moment).total_seconds()
    if seconds < 0:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "just now"


def when(value) -> str:
    moment = _parse(value)
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "–"


def time_tag(value) -> Markup:
    """<time> with the relative time shown and the exact one as its title."""
    moment = _parse(value)
    if moment is None:
        return Markup('<span class="muted">never</span>')
    # plain formatting (no Markup.format): called for every row of every list
    return Markup(f'<time datetime="{moment.isoformat(timespec="seconds")}Z" '
                  f'title="{moment:%Y-%m-%d %H:%M} UTC">{_ago(moment)}</time>')


def short_sha(value: str | None) -> str:
    return (value or "")[:8]


def percent(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}%"


def score(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def count(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def first_line(text: str | None, limit: int = 200) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[:limit - 1] + "…"


def http_url(value: str | None) -> str | None:
    """A link only when it is http(s): a stored `javascript:` URL never becomes a link."""
    if value and value.strip().lower().startswith(("http://", "https://")):
        return value.strip()
    return None


def case_standing(case: dict) -> tuple[str, str]:
    """What a test case is, in words, and its badge's style: its status, except for a
    quarantined case, which reads "quarantined" with how it does now: "failing" (its newest
    result failed, or it is broken), "flaky", or "passing". A quarantined case whose last
    results all failed is never shown as "stable" (its window, with passes further back and
    no flaky evidence, is stable by the score)."""
    status = case.get("status") or "new"
    if not case.get("isQuarantined"):
        return status, status
    if status == "flaky":
        return "quarantined, flaky", "flaky"
    if status == "broken" or case.get("lastStatus") == "failed":
        return "quarantined, failing", "broken"
    if case.get("lastStatus") in ("passed", "flaky"):
        return "quarantined, passing", "stable"
    return "quarantined", status


def case_badge(case: dict) -> Markup:
    """The case's standing as a badge (`case_standing`)."""
    text, style = case_standing(case)
    return Markup('<span class="badge c-{}">{}</span>').format(style, text)


def install(env) -> None:
    env.filters.update(duration=duration, ago=ago, when=when, time_tag=time_tag,
                       short_sha=short_sha, percent=percent, score=score, count=count,
                       first_line=first_line, http_url=http_url, run_label=run_label,
                       verdict_note=verdict_note, case_badge=case_badge)
