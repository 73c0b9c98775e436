"""Printing results: JSON for programs, tables for people.

`--output json` prints the server's JSON (camelCase) on stdout. In text mode a list is a table:
aligned columns with a header on a terminal; tab-separated, no header, times in RFC 3339 when
piped (so `cut` and `awk` work, as with `gh`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any


def to_jsonable(value: Any) -> Any:
    if hasattr(value, "to_json"):
        return value.to_json()
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, list):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    return value


def is_terminal(stream=None) -> bool:
    stream = stream or sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(value), indent=2 if is_terminal() else None,
                                default=str) + "\n")


#: columns holding a time besides those named `...At`
TIME_COLUMNS = frozenset({"at", "firstSeen", "lastSeen"})


def _cell(value: Any, tty: bool, column: str) -> str:
    if value is None:
        return "-" if tty else ""
    if isinstance(value, bool):
        if tty:
            return "yes" if value else "no"
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, str) and tty and (column.endswith("At") or column in TIME_COLUMNS):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
        return moment.strftime("%Y-%m-%d %H:%M")
    return str(value).replace("\t", " ").replace("\n", " ")


def print_table(rows: Sequence[Any], columns: Sequence[str],
                headers: Sequence[str] | None = None) -> None:
    """Rows (models or dicts) as a table of the given camelCase columns."""
    tty = is_terminal()
    data = [to_jsonable(row) for row in rows]
    cells = [[_cell(row.get(col), tty, col) for col in columns] for row in data]
    out = sys.stdout
    if not tty:
        for line in cells:
            out.write("\t".join(line) + "\n")
        return
    if not cells:
        out.write("(none)\n")
        return
    titles = [h.upper() for h in (headers or columns)]
    widths = [max(len(t), *(len(line[i]) for line in cells)) for i, t in enumerate(titles)]
    out.write("  ".join(t.ljust(w) for t, w in zip(titles, widths, strict=True)).rstrip() + "\n")
    for line in cells:
        out.write("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                  + "\n")


def print_fields(value: Any, fields: Sequence[str] | None = None) -> None:
    """One object as `name: value` lines (its own fields, or those given)."""
    data = to_jsonable(value)
    tty = is_terminal()
    for key in fields or list(data):
        if key in data:
            sys.stdout.write(f"{key}: {_cell(data[key], tty, key)}\n")


def note(message: str, output: str) -> None:
    """A line for people on stderr (never in JSON mode, so stderr stays the envelope's)."""
    if output != "json":
        sys.stderr.write(message + "\n")
        sys.stderr.flush()


def print_tree(rows: Sequence[tuple[int, str]]) -> None:
    """Indented lines, two spaces per level (`(depth, text)` pairs, depth first)."""
    if not rows and is_terminal():
        sys.stdout.write("(none)\n")
    for depth, text in rows:
        sys.stdout.write("  " * depth + text.replace("\n", " ") + "\n")


def first_line(text: str | None, width: int = 160) -> str:
    """The first line of a message, cut to `width` characters."""
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"
