"""Streaming reads of big JSON reports: each value is built by the C scanner of the standard
`json` module (`JSONDecoder.raw_decode`), the few tokens around the values are read here.

A report is a small "skeleton" of containers the parser walks (Playwright: the root object,
"suites" and the suites nested in them, their "specs"; CTRF: the root object, "results" and
"results.tests"), and the values hanging off it: config, stats, one spec, one CTRF test. Each
such value is built whole in C from the text read so far, so a 100k-test report never sits
whole in memory and Python never touches a test's tokens one by one. (Values are kept small on
purpose: objects that die young cost the garbage collector little, while a whole file suite
held during its conversion gets promoted and sets off full collections of a server's heap.)

    for event, shape, key, value in JsonDocument(stream, REPORT):  # REPORT: the root Shape
        ...  # (VALUE, the Shape the value is in, its key or index, the value), or START/END of
             # a skeleton container (its Shape, key or index, JSON path)

(ijson's C backend builds the same values, but takes about twice as long: 94 ms against 54 ms
for the suites of a 10k-test Playwright report. And `json` tells where an error is, so the
error paths are exact.)

Safety:
- nesting deeper than MAX_JSON_DEPTH anywhere in the document is refused, before any parser
  sees those bytes: `_DepthGuard` bounds the nesting of every chunk at C speed
  (bytes.translate/replace) and cuts the text at the offending bracket;
- malformed JSON, a skeleton container of the wrong type, NaN/Infinity, numbers out of a
  float's range and integers beyond 64 bits (as yajl refused them) raise ReportParseError with
  the JSON path of the problem (`$.suites[3].specs[2]`);
- a \\u escape of half a surrogate pair (which no UTF-8 text can hold) becomes U+FFFD.
"""

from __future__ import annotations

import codecs
import itertools
import json
import math
import re
from collections.abc import Iterator
from typing import Any

from .common import MAX_JSON_DEPTH
from .errors import ReportParseError

READ_SIZE = 256 * 1024
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_VALUE_STARTS = frozenset('{["-0123456789tfnNI\"')


# ------------------------------------------------------------------ the skeleton

class Shape:
    """A container of the skeleton: walked here, never built whole. Values in it (other than
    its skeleton children: `children` by key for an object, `item` for every item of an array)
    are built whole and handed to the parser. Shapes may nest recursively (a suite's suites)."""

    def __init__(self, name: str, kind: str, children: dict[str, Shape] | None = None,
                 item: Shape | None = None):
        assert kind in ("map", "array")
        self.name = name  # for messages: "the report", "suites", "a suite", "results.tests"
        self.kind = kind
        self.children = children if children is not None else {}
        self.item = item
        self.opening = "{" if kind == "map" else "["

    def wrong_type(self, path: str) -> ReportParseError:
        kind = "object" if self.kind == "map" else "array"
        return ReportParseError(f"{self.name} must be a JSON {kind}", path=path)


# what iterating a JsonDocument gives: (VALUE, container shape, key or index, the value), and
# (START or END, the skeleton container's shape, its key or index, its JSON path)
VALUE, START, END = "value", "start", "end"


# ------------------------------------------------------------------ values

def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number out of range: {text[:40]}")
    return value


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# a run of 19 digits: the shortest number that may not fit in 64 bits
_DIGITS = bytes(1 if byte in b"0123456789" else 0 for byte in range(256))
_LONG_NUMBER = b"\x01" * 19
_INT64 = 2 ** 63


class _IntegerOverflow(Exception):
    def __init__(self):
        super().__init__()
        self.parts: list[str] = []  # the path to the integer, filled in on the way out


def _sanitised(value, surrogates: bool, integers: bool):
    """`value` with every half of a surrogate pair (from a \\u escape) replaced by U+FFFD
    (when `surrogates`); raises _IntegerOverflow for an integer beyond 64 bits, which no
    database column holds (when `integers`). Only for documents whose bytes hint at either."""
    kind = type(value)
    if kind is str:
        if surrogates and _SURROGATE.search(value):
            return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return value
    if kind is int:
        if integers and not -_INT64 <= value < _INT64:
            raise _IntegerOverflow
        return value
    if kind is dict:
        copy = {}
        for key, item in value.items():
            try:
                copy[_sanitised(key, surrogates, False)] = _sanitised(item, surrogates, integers)
            except _IntegerOverflow as exc:
                exc.parts.insert(0, f".{key}")
                raise
        return copy
    if kind is list:
        items = []
        for index, item in enumerate(value):
            try:
                items.append(_sanitised(item, surrogates, integers))
            except _IntegerOverflow as exc:
                exc.parts.insert(0, f"[{index}]")
                raise
        return items
    return value


# ------------------------------------------------------------------ the depth guard

_ESCAPE_PAIR = re.compile(rb'\\[\\"]')
# keep quotes and brackets, objects and arrays alike
_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_QUOTE_OR_BRACKET = bytes(range(256)).translate(None, b'[]{}"')
_SIGN = bytes.maketrans(b"[]", b"\x01\xff")
# the same reading of the bytes as the guard's: escape pairs count wherever they are (a string
# the data ends in counts as one too)
_TOKEN = re.compile(rb'\\[\\"]|"[^"\\]*(?:\\.[^"\\]*)*(?:(?P<closed>")|\\?\Z)|[\[\]{},]', re.DOTALL)
_STRING_REST = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


class _DepthGuard:
    """Tracks the nesting depth of the bytes read, chunk by chunk, at C speed. Escape pairs
    and strings are cut out, the brackets that remain are reduced by removing "[]" pairs until
    none is left: after `passes` rounds, `still_open` unmatched opening brackets remain, and no
    point of the chunk nests deeper than still_open + passes. Only when that bound passes the
    limit is the depth computed exactly (and, when it really is too deep, the offending
    bracket found)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.depth = 0  # nesting at the end of the bytes checked so far
        self.in_string = False
        self.backslash = b""  # an odd backslash ending the last chunk: it escapes the next byte

    def check(self, chunk: bytes) -> int | None:
        """None, or the offset in `chunk` of the bracket that nests too deep."""
        data = self.backslash + chunk if self.backslash else chunk
        start = (data, self.in_string, self.depth, len(data) - len(chunk))
        body = data.rstrip(b"\\")
        run = len(data) - len(body)
        start_depth = self.depth
        if b"\\" in body:
            body = _ESCAPE_PAIR.sub(b"", body)
        marks = body.translate(_BRACKETS, _NOT_QUOTE_OR_BRACKET)
        if self.in_string:
            marks = b'"' + marks
        if b'"' in marks:
            marks = marks.replace(b'""', b"")  # strings without brackets, string boundaries
            parts = marks.split(b'"')
            self.in_string = len(parts) % 2 == 0
            marks = b"".join(parts[0::2])
        reduced = b"[" * start_depth + marks
        passes = 0
        while b"[]" in reduced and passes <= self.limit:
            reduced = reduced.replace(b"[]", b"")
            passes += 1
        still_open = len(reduced) - len(reduced.rstrip(b"["))  # what is left: "]]]...[[["
        if still_open + passes > self.limit:
            steps = memoryview(marks.translate(_SIGN)).cast("b")  # +1, -1 per bracket
            if max(itertools.accumulate(steps, initial=start_depth)) > self.limit:
                return _walk(*start, limit=self.limit)[0]
            still_open = start_depth + sum(steps)
        self.depth = still_open
        self.backslash = b"\\" if run % 2 else b""
        return None


def _walk(data: bytes, in_string: bool, depth: int, shift: int = 0, limit: int | None = None
          ) -> tuple[int | None, list[str | None]]:
    """Read `data` token by token, as the guard does (only on the way to an error): to the
    bracket that nests deeper than `limit` (returning its offset minus `shift`), or to the end
    (None). Also the path components of the containers opened in `data` and still open there
    (None for one whose key started before `data`), then, when reading stops inside an object
    after a key, that key."""
    frames: list[list] = []  # [kind, component, index, key, expecting a key]
    position = 0
    if in_string:
        rest = _STRING_REST.match(data)
        position = rest.end() if rest else len(data)
    for token in _TOKEN.finditer(data, position):
        text = token.group()
        top = frames[-1] if frames else None
        if text[:1] == b"\\":
            continue
        if text[:1] == b'"':
            if top is not None and top[0] == "map" and top[4] and token.group("closed"):
                try:
                    top[3] = json.loads(text)
                except ValueError:
                    top[3] = text[1:-1].decode("utf-8", errors="replace")
                top[4] = False
        elif text == b",":
            if top is not None:
                if top[0] == "array":
                    top[2] += 1
                else:
                    top[4] = True
        elif text in (b"[", b"{"):
            depth += 1
            if depth == 1:
                component = "$"
            elif top is None:
                component = None
            elif top[0] == "array":
                component = f"[{top[2]}]"
            else:
                component = f".{top[3]}" if top[3] is not None and not top[4] else None
            frames.append(["array" if text == b"[" else "map", component, 0, None, True])
            if limit is not None and depth > limit:
                return token.start() - shift, [frame[1] for frame in frames]
        else:
            depth -= 1
            if frames:
                frames.pop()
    opened = [frame[1] for frame in frames]
    if frames and frames[-1][0] == "map" and not frames[-1][4] and frames[-1][3] is not None:
        opened.append(f".{frames[-1][3]}")
    return None, opened


# ------------------------------------------------------------------ the document

class JsonDocument:
    """The values of a JSON document's skeleton, in document order, each built whole:
    (container shape, key or index, value). Raises ReportParseError (with the JSON path) for
    malformed JSON, a skeleton container of the wrong type, or nesting deeper than
    MAX_JSON_DEPTH."""

    def __init__(self, stream, root: Shape, limit: int = MAX_JSON_DEPTH):
        self._stream = stream
        self._root = root
        self._guard = _DepthGuard(limit)
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._raw_decode = json.JSONDecoder(parse_float=_finite_float,
                                            parse_constant=_refuse_constant).raw_decode
        self._text = ""  # decoded text not consumed yet (and the value being read)
        self._pos = 0  # where reading is in _text
        self._at_end = False  # no more text will come: the end, or a stop
        #: why the text stops before the end: (message, the offending bracket or "")
        self._stop: tuple[str, str] | None = None
        self._fix_surrogates = False  # once a \u escape of a surrogate has been read
        self._check_integers = False  # once a run of 19 digits has been read
        self._tail = b""  # the end of the last chunk (an escape or a number may straddle two)
        self._seen: set[str] = set()

    def saw(self, shape: Shape) -> bool:
        """Whether the document has a container at `shape`'s place."""
        return shape.name in self._seen

    # -------------------------------------------------------------- reading

    def _more(self) -> None:
        """Read on, dropping the text before the current position: at least as much again
        as the text kept (so a value read again after it ran into the end costs O(n) in all),
        or to the end."""
        text = self._text[self._pos:]
        self._pos = 0
        wanted = max(len(text), 1)
        pieces = [text]
        while wanted > 0 and not self._at_end:
            piece = self._read()
            pieces.append(piece)
            wanted -= len(piece)
        self._text = "".join(pieces)

    def _read(self) -> str:
        chunk = self._stream.read(READ_SIZE)
        if not chunk:
            self._at_end = True
            return self._decode(b"", final=True)
        offset = self._guard.check(chunk)
        if offset is not None:
            self._stop = ("JSON nested deeper than {limit} levels", chr(chunk[offset]))
            self._at_end = True
            chunk = chunk[:offset]
        if not self._fix_surrogates and (b"\\" in chunk or b"\\" in self._tail) and (
                _SURROGATE_ESCAPE.search(chunk) or _SURROGATE_ESCAPE.search(self._tail[-6:] + chunk[:6])):
            self._fix_surrogates = True
        if not self._check_integers and (_LONG_NUMBER in chunk.translate(_DIGITS) or
                                         _LONG_NUMBER in (self._tail + chunk[:18]).translate(_DIGITS)):
            self._check_integers = True
        self._tail = chunk[-18:]
        return self._decode(chunk, final=self._at_end)

    def _decode(self, chunk: bytes, final: bool) -> str:
        try:
            return self._decoder.decode(chunk, final)
        except UnicodeDecodeError as exc:
            # the text up to the first byte that is not UTF-8, then a stop
            data = self._decoder.getstate()[0] + chunk  # a failed decode keeps its state
            try:
                data.decode("utf-8")
                good = b""  # pragma: no cover - the decoder refused it, so this does too
            except UnicodeDecodeError as whole:
                good = data[: whole.start]
            self._stop = (f"malformed JSON: not UTF-8 ({exc.reason})", "")
            self._at_end = True
            return good.decode("utf-8")

    def _peek(self, where: str, end_allowed: bool = False) -> str:
        """The next character after whitespace. At the end of the text: "" if `end_allowed`,
        else the document ends too early (at JSON path `where`)."""
        while True:
            match = _WHITESPACE.match(self._text, self._pos)
            assert match is not None  # `[ \t\n\r]*` matches anywhere, if only ""
            self._pos = match.end()
            if self._pos < len(self._text):
                return self._text[self._pos]
            if self._at_end:
                if end_allowed and self._stop is None:
                    return ""
                raise self._stop_error(where, "", 0)
            self._more()

    def _value(self, where: str, depth: int):
        """The whole value at the current position; `where` is its JSON path and `depth` the
        nesting of the container it is in."""
        while True:
            text, start = self._text, self._pos
            try:
                value, end = self._raw_decode(text, start)
            except json.JSONDecodeError as exc:
                # ran into the end of the text read so far: read on, or it is truncated
                slack = 0 if self._at_end else 8
                if exc.pos >= len(text) - slack or exc.msg.startswith("Unterminated string"):
                    if not self._at_end:
                        self._more()
                        continue
                    raise self._stop_error(where, text[start:], depth) from None
                raise ReportParseError(f"malformed JSON: {exc.msg}",
                                       path=self._path_in(where, text[start:exc.pos], depth)) from None
            except (ValueError, RecursionError) as exc:  # NaN, a number out of range, too many digits
                raise ReportParseError(f"malformed JSON: {exc}", path=where) from None
            if end == len(text) and not self._at_end and text[start] not in '"[{':
                self._more()  # a number may go on in the next chunk
                continue
            self._pos = end
            if self._fix_surrogates or self._check_integers:
                try:
                    return _sanitised(value, self._fix_surrogates, self._check_integers)
                except _IntegerOverflow as exc:
                    raise ReportParseError("malformed JSON: integer overflow",
                                           path=where + "".join(exc.parts)) from None
            return value

    def _path_in(self, where: str, text: str, depth: int) -> str:
        """The JSON path of the end of `text`, which starts with the value at `where`."""
        _, opened = _walk(text.encode("utf-8", errors="surrogatepass"), False, depth)
        parts = [where]
        for part in opened[1:]:
            if part is None:
                break
            parts.append(part)
        return "".join(parts)

    def _stop_error(self, where: str, text: str, depth: int) -> ReportParseError:
        """The document ends (or stops, see _stop) inside the value at `where` whose text so
        far is `text`."""
        if self._stop is None:
            return ReportParseError("malformed JSON: the document ends too early (premature EOF)",
                                    path=self._path_in(where, text, depth) if text else where)
        message, offender = self._stop
        if offender:
            message = message.format(limit=self._guard.limit)
            text += offender  # the path of the container that nests too deep
        return ReportParseError(message, path=self._path_in(where, text, depth) if text else where)

    # -------------------------------------------------------------- the walk

    def __iter__(self) -> Iterator[tuple[str, Shape, Any, Any]]:
        first = self._peek("$")
        if first != "{":
            if first in _VALUE_STARTS:
                raise self._root.wrong_type("$")
            self._syntax("Expecting value", "$")
        yield from self._container(self._root, None, "$", 1)
        if self._peek("$", end_allowed=True) != "":
            self._syntax("Extra data after the document", "$")

    def _container(self, shape: Shape, key, path: str, depth: int
                   ) -> Iterator[tuple[str, Shape, Any, Any]]:
        """START, the values and containers in the skeleton container at the current position
        (its opening bracket, already checked; `key` in its parent, JSON path `path`, nested
        `depth` deep), END."""
        self._seen.add(shape.name)
        self._pos += 1
        yield START, shape, key, path
        if shape.kind == "map":
            closing, index = "}", None
        else:
            closing, index = "]", 0
        c = self._peek(path)
        if c == closing:
            self._pos += 1
            yield END, shape, key, path
            return
        while True:
            if index is None:
                if c != '"':
                    self._syntax("Expecting property name enclosed in double quotes", path)
                key = self._value(path, depth)
                if self._peek(path) != ":":
                    self._syntax("Expecting ':' delimiter", f"{path}.{key}")
                self._pos += 1
                c = self._peek(path)
                child_path = f"{path}.{key}"
                child = shape.children.get(key)
                if child is not None:
                    if c != child.opening:
                        if c in _VALUE_STARTS:
                            raise child.wrong_type(child_path)
                        self._syntax("Expecting value", child_path)
                    yield from self._container(child, key, child_path, depth + 1)
                else:
                    if c not in _VALUE_STARTS:
                        self._syntax("Expecting value", child_path)
                    yield VALUE, shape, key, self._value(child_path, depth)
            else:
                item_path = f"{path}[{index}]"
                item = shape.item
                if item is not None:
                    if c != item.opening:
                        if c in _VALUE_STARTS:
                            raise item.wrong_type(item_path)
                        self._syntax("Expecting value", item_path)
                    yield from self._container(item, index, item_path, depth + 1)
                else:
                    if c not in _VALUE_STARTS:
                        self._syntax("Expecting value", item_path)
                    yield VALUE, shape, index, self._value(item_path, depth)
                index += 1
            c = self._peek(path)
            if c == ",":
                self._pos += 1
                c = self._peek(path)
                if c == closing:
                    self._syntax("Expecting value" if index is not None else
                                 "Expecting property name enclosed in double quotes", path)
                continue
            if c == closing:
                self._pos += 1
                yield END, shape, key, path
                return
            self._syntax("Expecting ',' delimiter", path)

    @staticmethod
    def _syntax(message: str, path: str):
        raise ReportParseError(f"malformed JSON: {message}", path=path)
