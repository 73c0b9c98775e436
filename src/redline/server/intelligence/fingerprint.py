"""Failure grouping: failures with the same normalised error share a fingerprint.

Normalising strips what differs between two occurrences of the same failure (numbers, ids,
hex addresses, UUIDs, temporary paths, timestamps, quoted values' digits) and keeps what
identifies it: the error type, the message's words, and the stack frames by file and function
(not by line or column, which move with every edit).
"""

from __future__ import annotations

import functools
import hashlib
import re

_RULES = [
    (re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?"),
     "<time>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.IGNORECASE),
     "<uuid>"),
    (re.compile(r"\b[a-z]+_[0-9A-HJKMNP-TV-Z]{26}\b"), "<id>"),  # prefixed ULIDs
    (re.compile(r"(/tmp|/var/folders|/private/var|C:\\Users\\[^\\]+\\AppData\\Local\\Temp)"
                r"[^\s'\"):]*"), "<tmp>"),
    (re.compile(r"\b0x[0-9a-f]+\b", re.IGNORECASE), "<hex>"),
    (re.compile(r"\b[0-9a-f]{12,}\b", re.IGNORECASE), "<hex>"),
    (re.compile(r"\d+(\.\d+)?"), "<n>"),
]

# "at fn (file.ts:12:5)", "at file.ts:12:5", Python's 'File "x.py", line 3, in fn', Java's
# "at pkg.Class.method(File.java:42)"
_JS_FRAME = re.compile(r"^\s*at (?:(?P<fn>[^\s(]+) \()?(?P<file>[^():\s]+):\d+(?::\d+)?\)?")
_PY_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line \d+, in (?P<fn>\S+)')
_JAVA_FRAME = re.compile(r"^\s*at (?P<fn>[\w$.<>]+)\((?P<file>[\w$.]+)(?::\d+)?\)")
MAX_FRAMES = 8


# (a pure function of short texts that repeat: a report's failures share their files and,
# often, their messages; eight substitutions each took 3% of a failing report's import)
@functools.lru_cache(maxsize=4096)
def normalise_text(text: str) -> str:
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return " ".join(text.split())


def frames(stack: str | None) -> list[str]:
    """The stack's frames as `file:function` (files stripped of temp dirs and numbers)."""
    found = []
    for line in (stack or "").splitlines():
        match = _PY_FRAME.match(line) or _JAVA_FRAME.match(line) or _JS_FRAME.match(line)
        if match:
            file = normalise_text(match.group("file")).rsplit("/", 1)[-1]
            found.append(f"{file}:{match.group('fn') or ''}")
            if len(found) == MAX_FRAMES:
                break
    return found


def first_line(message: str) -> str:
    for line in message.splitlines():
        if line.strip():
            return line.strip()
    return ""


def fingerprint(error: dict | None) -> str | None:
    """A stable id for the error's kind, or None without an error."""
    if not error or not (error.get("message") or error.get("stack")):
        return None
    message = normalise_text(first_line(error.get("message") or ""))[:500]
    parts = [error.get("type") or "", message, *frames(error.get("stack"))]
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()
