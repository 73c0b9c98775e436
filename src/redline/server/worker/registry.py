"""Job kinds and their handlers. Each feature registers its jobs in its own `tasks.py`:

    @task("webhooks.deliver")
    def deliver(ctx, payload: dict) -> None: ...

Handlers must be idempotent (a job may run again after a crash).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

TASKS: dict[str, Callable] = {}

# the modules whose import registers handlers
TASK_MODULES = ("redline.server.webhooks.tasks", "redline.server.artifacts.tasks",
                "redline.server.executions.tasks")


def task(kind: str):
    def register(function: Callable) -> Callable:
        TASKS[kind] = function
        return function

    return register


def load_tasks() -> None:
    for module in TASK_MODULES:
        importlib.import_module(module)


def handler_for(kind: str) -> Callable:
    load_tasks()
    try:
        return TASKS[kind]
    except KeyError:
        from redline.server.worker.runner import Permanent

        raise Permanent(f"no handler for job kind {kind!r}") from None
