"""Searching text columns with LIKE: the one place user text is escaped for a pattern.

A user's search text is literal: `50%` finds "50%", not "50 anything"; `a_b` finds "a_b", not
"axb". `like_escape` escapes the wildcards (and the escape character itself) with `ESCAPE`,
which the query must name (`column.like(pattern, escape=ESCAPE)`); `contains` and
`icontains` build the whole condition. Works the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement

#: the escape character every pattern built here uses
ESCAPE = "\\"


def like_escape(text: str) -> str:
    """`text` with `\\`, `%` and `_` escaped, to be matched literally inside a pattern."""
    return text.replace(ESCAPE, ESCAPE * 2).replace("%", ESCAPE + "%").replace("_", ESCAPE + "_")


def contains_pattern(text: str) -> str:
    """The pattern of "contains `text`" (`%text%`, the text escaped)."""
    return f"%{like_escape(text)}%"


def contains(column: Any, text: str) -> ColumnElement[bool]:
    """`column LIKE '%text%'`, case-sensitive where the database is, the text literal."""
    return column.like(contains_pattern(text), escape=ESCAPE)


def icontains(column: Any, text: str) -> ColumnElement[bool]:
    """`column ILIKE '%text%'`: case-insensitive, the text literal."""
    return column.ilike(contains_pattern(text), escape=ESCAPE)
