"""A pull reader over ijson's event stream that knows where it is in the document.

The JSON parsers walk big reports (Playwright's nested suites, CTRF's tests array) event by
event and build only one small object (a spec, a test) at a time, so a 100k-test report never
sits whole in memory. The reader tracks the JSON path for error messages and refuses nesting
deeper than MAX_JSON_DEPTH.
"""

from __future__ import annotations

from collections.abc import Iterator

import ijson  # picks the fastest backend available (yajl2_c when its C extension is built)

from .common import MAX_JSON_DEPTH
from .errors import ReportParseError

_CONTAINER_START = ("start_map", "start_array")
_CONTAINER_END = ("end_map", "end_array")


def _ijson_message(exc: Exception) -> str:
    """ijson's message, first line only (yajl appends a picture of the offending text)."""
    raw = exc.args[0] if exc.args else str(exc)
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    lines = [line.strip() for line in str(raw).splitlines() if line.strip()]
    return lines[0] if lines else "invalid JSON"


class JsonEvents:
    """Events of one JSON document, pulled one at a time, with the current path."""

    def __init__(self, stream):
        self._events = ijson.basic_parse(stream, use_float=True)
        #: keys and indexes from the root to the value being read
        self.path: list[str | int] = []
        self.depth = 0

    def where(self) -> str:
        """The current position as a JSON path, e.g. `$.suites[0].specs[2]`."""
        parts = ["$"]
        for part in self.path:
            parts.append(f"[{part}]" if isinstance(part, int) else f".{part}")
        return "".join(parts)

    def error(self, message: str) -> ReportParseError:
        return ReportParseError(message, path=self.where())

    def next(self) -> tuple[str, object]:
        try:
            event, value = next(self._events)
        except StopIteration:
            raise self.error("unexpected end of the JSON document") from None
        except ijson.JSONError as exc:
            raise self.error(f"malformed JSON: {_ijson_message(exc)}") from exc
        except UnicodeDecodeError as exc:
            raise self.error(f"malformed JSON: not UTF-8 ({exc.reason})") from exc
        if event in _CONTAINER_START:
            self.depth += 1
            if self.depth > MAX_JSON_DEPTH:
                raise self.error(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        elif event in _CONTAINER_END:
            self.depth -= 1
        return event, value

    def finish(self) -> None:
        """Read to the end of the input, so trailing garbage is reported, not ignored."""
        try:
            for _ in self._events:
                raise self.error("malformed JSON: more than one value in the document")
        except ijson.JSONError as exc:
            raise self.error(f"malformed JSON: {_ijson_message(exc)}") from exc

    def expect_map(self, what: str) -> None:
        event, _ = self.next()
        if event != "start_map":
            raise self.error(f"{what} must be a JSON object")

    def map_keys(self) -> Iterator[str]:
        """The keys of the object whose start was just read; the caller reads each value
        (with read_value, skip_value or its own walk) before asking for the next key."""
        while True:
            event, value = self.next()
            if event == "end_map":
                return
            self.path.append(value)
            yield value
            self.path.pop()

    def array_items(self, what: str) -> Iterator[tuple[str, object]]:
        """The items of the array that starts at the next event. Yields each item's first
        event; the caller reads the rest of the item (read_value(first=...), etc.)."""
        event, _ = self.next()
        if event != "start_array":
            raise self.error(f"{what} must be a JSON array")
        index = 0
        while True:
            event, value = self.next()
            if event == "end_array":
                return
            self.path.append(index)
            yield event, value
            self.path.pop()
            index += 1

    def read_value(self, first: tuple[str, object] | None = None):
        """The whole value that starts at the next event (or at `first`, already pulled)."""
        event, value = first if first is not None else self.next()
        if event == "map_key":
            raise self.error("malformed JSON: a key where a value was expected")
        if event not in _CONTAINER_START:
            return value
        root: dict | list = {} if event == "start_map" else []
        stack: list[list] = [[root, None]]  # [container, key waiting for its value]
        while stack:
            event, value = self.next()
            frame = stack[-1]
            if event == "map_key":
                frame[1] = value
                continue
            if event in _CONTAINER_END:
                stack.pop()
                continue
            if event == "start_map":
                child = {}
            elif event == "start_array":
                child = []
            else:
                child = value
            container = frame[0]
            if isinstance(container, dict):
                container[frame[1]] = child
            else:
                container.append(child)
            if event in _CONTAINER_START:
                stack.append([child, None])
        return root

    def skip_value(self, first: tuple[str, object] | None = None) -> None:
        """Read past the value that starts at the next event without building it."""
        event, _ = first if first is not None else self.next()
        if event not in _CONTAINER_START:
            return
        open_containers = 1
        while open_containers:
            event, _ = self.next()
            if event in _CONTAINER_START:
                open_containers += 1
            elif event in _CONTAINER_END:
                open_containers -= 1
