"""The runner: a process that executes a plan's runs for a Redline server, reaching it only
over HTTP with a runner token (`redline runner`, and one embedded in `redline serve`)."""
