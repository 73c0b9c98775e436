"""The Redline server: the REST API, the dashboard and the background workers."""
