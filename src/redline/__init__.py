"""Redline: a self-hosted platform for automated test results."""
__version__ = "0.1.0"
