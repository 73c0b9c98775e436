"""The one LIKE-escaping helper (server/kit/like.py), on the real database: a user's text is
matched literally, wildcards and the escape character included."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from redline.server.kit.like import contains, icontains, like_escape

TITLES = ["50% done", "500 done", "a_b", "axb", "back\\slash", "backslash", "Login works",
          "login WORKS twice"]
SRC = Path(__file__).resolve().parents[1] / "src" / "redline" / "server"


@pytest.fixture(scope="module")
def titles(database_url):
    engine = sa.create_engine(database_url)
    table = sa.Table("like_probe", sa.MetaData(), sa.Column("title", sa.Text))
    table.drop(engine, checkfirst=True)
    table.create(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"title": t} for t in TITLES])
    yield engine, table
    table.drop(engine)
    engine.dispose()


def _search(titles, condition) -> list[str]:
    engine, table = titles
    with engine.connect() as conn:
        return sorted(conn.execute(sa.select(table.c.title).where(condition(table.c.title)))
                      .scalars())


@pytest.mark.parametrize("text,found", [
    ("50%", ["50% done"]), ("a_b", ["a_b"]), ("k\\s", ["back\\slash"]), ("%", ["50% done"]),
    ("_", ["a_b"]), ("done", ["50% done", "500 done"]),
])
def test_search_text_is_matched_literally(titles, text, found):
    assert _search(titles, lambda column: icontains(column, text)) == found
    assert _search(titles, lambda column: contains(column, text)) == found


def test_icontains_ignores_case(titles):
    assert _search(titles, lambda column: icontains(column, "login works")) == \
        ["Login works", "login WORKS twice"]


def test_like_escape():
    assert like_escape("a%b_c\\d") == "a\\%b\\_c\\\\d"


# Files that still escape by hand, until their owners move them to the helper (issue 20).
PENDING = {"intelligence/service.py", "results/repository.py"}


def test_no_new_hand_made_like_escaping_in_the_server():
    hand_made = {str(path.relative_to(SRC)) for path in SRC.rglob("*.py")
                 if re.search(r"""replace\(\s*["']%["']\s*,\s*["']\\\\%""", path.read_text())}
    assert hand_made - PENDING == set()
