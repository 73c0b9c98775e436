"""Background work: the job outbox (outbox.py), handlers (registry.py), workers (runner.py)."""
