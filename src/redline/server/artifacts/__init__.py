"""Artifacts: screenshots, videos, traces and reports, kept in a blob store and served by
Redline's own signed URLs (endpoints.py, service.py, repository.py, blobs.py, signing.py)."""
