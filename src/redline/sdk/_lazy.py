"""Models named when a call is described, imported when a response is decoded.

`resources.py` writes `m.Page[m.Run]` as before, but `m` is this module's `models`: the
expression builds a `ModelRef` and imports nothing. The client resolves the reference when it
decodes a response, so a client that returns the server's JSON (`raw=True`) never imports
pydantic or `redline.sdk.models` (a third of the CLI's start-up).
"""

from __future__ import annotations

import importlib
from typing import Any


class ModelRef:
    """`Name` or `Name[Arg, ...]` of `redline.sdk.models`, resolved on demand."""

    __slots__ = ("args", "name")

    def __init__(self, name: str, args: tuple[ModelRef, ...] = ()):
        self.name = name
        self.args = args

    def __getitem__(self, item: Any) -> ModelRef:
        return ModelRef(self.name, item if isinstance(item, tuple) else (item,))

    def resolve(self) -> Any:
        target = getattr(importlib.import_module("redline.sdk.models"), self.name)
        if not self.args:
            return target
        args = tuple(arg.resolve() for arg in self.args)
        return target[args if len(args) > 1 else args[0]]

    def _key(self) -> tuple:
        return (self.name, tuple(arg._key() for arg in self.args))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ModelRef) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        inner = f"[{', '.join(map(repr, self.args))}]" if self.args else ""
        return f"{self.name}{inner}"


class _Models:
    def __getattr__(self, name: str) -> ModelRef:
        if name.startswith("__"):
            raise AttributeError(name)
        return ModelRef(name)


#: stands in for `redline.sdk.models` in `resources.py`
models = _Models()


def resolve(model: Any) -> Any:
    return model.resolve() if isinstance(model, ModelRef) else model
