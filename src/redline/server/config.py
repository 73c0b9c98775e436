"""The one settings class of the server. Every setting is documented here and in the README."""

from __future__ import annotations

import secrets
from functools import cached_property
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"
SERVED_URL_FILE = "served_url"  # in the data dir: where `redline serve` last listened


class Settings(BaseSettings):
    """Server settings, read from `REDLINE_*` environment variables."""

    model_config = SettingsConfigDict(env_prefix="REDLINE_", extra="ignore")

    data_dir: Path = Field(Path(".redline"), description="Folder for the SQLite database "
                           "and the generated secret key.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default "
                                     "sqlite:///<data_dir>/redline.db. PostgreSQL: "
                                     "postgresql+psycopg://user@host/db")
    db_pool_size: int = Field(10, ge=1, le=500, description="Database connections each "
                              "process keeps open; also how many requests it runs at once "
                              "(its threadpool's size; more wait their turn).")
    db_max_overflow: int = Field(10, ge=0, le=500, description="Extra connections a process "
                                 "may open under load. Keep processes x (pool size + overflow) "
                                 "under PostgreSQL's max_connections.")
    forwarded_allow_ips: str | None = Field(None, description="Comma-separated addresses of "
                                            "reverse proxies whose X-Forwarded-For is trusted "
                                            "(per-address limits then see the real client).")
    webhook_allow_nets: str | None = Field(None, description="Comma-separated networks (CIDR) "
                                           "webhooks may reach although they are not public, "
                                           "e.g. 10.0.0.0/8 for an internal receiver.")
    job_lease_seconds: int = Field(60, ge=1, le=3600, description="How long a worker holds a "
                                   "claimed job; a crashed worker's job is taken again after "
                                   "it.")
    shard_timeout_seconds: int = Field(2 * 3600, ge=1, le=7 * 24 * 3600, description="A "
                                       "sharded run, or a live reporter's run, with no news "
                                       "(no result, no shard joining or finishing) for this "
                                       "long is completed `failed` by the worker; a sharded "
                                       "one names the shards that never reported in "
                                       "`missingShards`.")
    redis_url: str | None = Field(None, description="Redis for rate-limit counters shared by "
                                  "all server processes; without it limits are per process.")
    secret_key: str | None = Field(None, description="Signs cursors, sessions and artifact "
                                   "URLs; generated into <data_dir>/secret_key when unset.")
    public_url: str | None = Field(None, description="The URL users reach the server at "
                                   "(used in links and signed URLs); default: the address "
                                   "`redline serve` listens on.")
    write_wait_seconds: float = Field(15.0, gt=0, le=300, description="SQLite: how long a "
                                      "write waits for its turn (SQLite takes one writer at a "
                                      "time) before it answers 503 UNAVAILABLE with "
                                      "Retry-After.")
    shutdown_grace_seconds: int = Field(10, ge=1, le=300, description="On SIGTERM, how "
                                        "long requests in flight may take to finish before "
                                        "the server closes their connections; then as long "
                                        "again, at most, for its background work.")
    max_body_bytes: int = Field(10 * 1024 * 1024, description="Cap on JSON request bodies.")
    max_import_bytes: int = Field(200 * 1024 * 1024, description="Cap on an imported report.")
    max_result_text_bytes: int = Field(1024 * 1024, ge=1024, le=64 * 1024 * 1024,
                                       description="Each imported result's stdout, stderr, "
                                       "error message and stack are kept up to this many "
                                       "bytes; the middle of a longer text is cut, with a "
                                       "visible `[... N bytes cut ...]` marker.")
    rate_limit_enabled: bool = Field(True, description="Turn per-key rate limits on or off.")
    login_max_failures: int = Field(10, description="Failed sign-ins of one account before "
                                    "it is throttled for `login_lockout_seconds`.")
    login_lockout_seconds: int = Field(300, description="How long a throttled account waits.")
    session_idle_seconds: int = Field(7 * 24 * 3600, description="A session or personal token "
                                      "unused for this long expires.")
    session_absolute_seconds: int = Field(30 * 24 * 3600, description="A session or personal "
                                          "token expires this long after sign-in regardless.")
    cookie_secure: bool = Field(True, description="Send the session cookie as Secure "
                                "(`__Host-session`); turn off only for plain-HTTP development.")
    log_level: str = Field("INFO", description="Log level of the server.")
    blob_url: str | None = Field(None, description="Where artifact files are kept: "
                                 "file://<folder> (default file://<data_dir>/blobs) or "
                                 "s3://bucket/prefix.")
    s3_endpoint: str | None = Field(None, description="Endpoint of an S3-compatible store "
                                    "(MinIO, Ceph, R2...); unset for AWS. Credentials come from "
                                    "the usual AWS_* variables.")
    s3_redirect: bool = Field(False, description="Answer a valid artifact link with a redirect "
                              "to a short-lived S3 presigned URL instead of streaming the file "
                              "through the server.")
    artifact_url_ttl_seconds: int = Field(3600, ge=1, le=7 * 24 * 3600, description="How "
                                          "long an artifact link works (at most 7 days).")
    artifact_public_url: str | None = Field(None, description="Base URL of artifact links; "
                                            "default public_url. Best another origin than the "
                                            "dashboard's.")
    user_content_url: str | None = Field(None, description="Where users reach the "
                                         "user-content origin, which serves HTML reports and "
                                         "the trace viewer (e.g. https://usercontent.example."
                                         "com, proxied to `user_content_port`); default: "
                                         "http://<served host>:<user_content_port>. Must not "
                                         "be the dashboard's origin; best another host name.")
    user_content_port: int | None = Field(None, ge=1, le=65535, description="Port of the "
                                          "second listener of `redline serve`, which serves "
                                          "only user content (signed report and trace links, "
                                          "never the API or a session); default: the served "
                                          "port + 1.")
    runner_lease_seconds: int = Field(30, ge=2, le=3600, description="How long a runner "
                                      "holds an executed run without a heartbeat; a runner "
                                      "silent for longer is lost, and its run is queued again "
                                      "once, then failed (runner_lost).")
    runner_cancel_grace_seconds: float = Field(10.0, ge=0, le=600, description="After a "
                                               "cancel's SIGTERM, how long a run's processes "
                                               "have before SIGKILL.")
    runner_source_paths: str | None = Field(None, description="Folders (separated by ':') a "
                                            "plan's `path` source or local git source may lie "
                                            "in; none by default. Read by every runner.")
    runner_allow_unsandboxed: bool = Field(False, description="Let the runner embedded in "
                                           "`redline serve` run plans without the bubblewrap "
                                           "sandbox (it refuses by default).")
    # An executed run's resource limits: a plan's `limits` may set each up to its maximum;
    # what it leaves out is the default.
    run_default_cpu_seconds: int | None = Field(None, ge=1, le=10**6, description="CPU "
                                                "seconds a run's command may use (per "
                                                "process); null: the plan's timeoutSeconds "
                                                "+ 60.")
    run_max_cpu_seconds: int = Field(86400, ge=1, le=10**6, description="The most a plan's "
                                     "limits.cpuSeconds may be.")
    run_default_memory_mb: int = Field(8192, ge=16, le=10**7, description="Address space "
                                       "(MiB) each process of a run's command may map.")
    run_max_memory_mb: int = Field(65536, ge=16, le=10**7, description="The most a plan's "
                                   "limits.memoryMb may be.")
    run_default_open_files: int = Field(4096, ge=16, le=10**6, description="Open files per "
                                        "process of a run's command.")
    run_max_open_files: int = Field(65536, ge=16, le=10**6, description="The most a plan's "
                                    "limits.openFiles may be.")
    run_default_output_bytes: int = Field(64 * 1024 * 1024, ge=1024, le=2**40,
                                          description="Bytes of a run's output kept in its "
                                          "log; the rest is cut, with a line saying so.")
    run_max_output_bytes: int = Field(1024 * 1024 * 1024, ge=1024, le=2**40,
                                      description="The most a plan's limits.outputBytes may "
                                      "be.")

    @field_validator("blob_url")
    @classmethod
    def _blob_url_scheme(cls, value: str | None) -> str | None:
        if value is not None:
            from redline.server.artifacts.blobs import parse_blob_url

            parse_blob_url(value)  # ValueError: a settings error at startup
        return value

    @cached_property
    def resolved_blob_url(self) -> str:
        return self.blob_url or (self.data_dir / "blobs").resolve().as_uri()

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(self.data_dir / 'redline.db').resolve()}"

    @property
    def resolved_public_url(self) -> str:
        """`public_url`, else the address `redline serve` said it listens on (its data dir's
        `served_url`, for `redline demo` and other commands beside it), else port 8000."""
        if self.public_url:
            return self.public_url.rstrip("/")
        served = self.data_dir / SERVED_URL_FILE
        try:
            return served.read_text().strip() or DEFAULT_PUBLIC_URL
        except OSError:
            return DEFAULT_PUBLIC_URL

    @property
    def resolved_user_content_url(self) -> str | None:
        """`user_content_url` (`redline serve` sets it to its second listener when unset), or
        None: then this server has no user-content origin and reports do not open in place."""
        return self.user_content_url.rstrip("/") if self.user_content_url else None

    @cached_property
    def resolved_secret_key(self) -> bytes:
        """The secret key; created once in the data dir so restarts keep sessions valid."""
        if self.secret_key:
            return self.secret_key.encode()
        path = self.data_dir / "secret_key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip().encode()
