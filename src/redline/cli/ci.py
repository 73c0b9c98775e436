"""What a run was: branch, commit, build id and URL, provider and title, detected from the CI
provider's environment, else from the local git checkout. Every value has a flag that
overrides it (`upload`, `exec`); `detect` only fills what the flags left out.

| provider | detected by | branch | commit | build id | build URL |
|---|---|---|---|---|---|
| GitHub Actions | GITHUB_ACTIONS | GITHUB_HEAD_REF (a pull request), else GITHUB_REF_NAME | GITHUB_SHA | GITHUB_RUN_ID-GITHUB_RUN_ATTEMPT | GITHUB_SERVER_URL/GITHUB_REPOSITORY/actions/runs/GITHUB_RUN_ID |
| GitLab CI | GITLAB_CI | CI_MERGE_REQUEST_SOURCE_BRANCH_NAME, else CI_COMMIT_REF_NAME | CI_COMMIT_SHA | CI_PIPELINE_ID | CI_PIPELINE_URL |
| CircleCI | CIRCLECI | CIRCLE_BRANCH | CIRCLE_SHA1 | CIRCLE_WORKFLOW_ID, else CIRCLE_BUILD_NUM | CIRCLE_BUILD_URL |
| Jenkins | JENKINS_URL | CHANGE_BRANCH, else BRANCH_NAME, else GIT_BRANCH | GIT_COMMIT | BUILD_TAG | BUILD_URL |
| Buildkite | BUILDKITE | BUILDKITE_BRANCH | BUILDKITE_COMMIT | BUILDKITE_BUILD_ID | BUILDKITE_BUILD_URL |
| Azure Pipelines | TF_BUILD | SYSTEM_PULLREQUEST_SOURCEBRANCH, else BUILD_SOURCEBRANCH (refs/heads/ cut) | BUILD_SOURCEVERSION | BUILD_BUILDID | SYSTEM_COLLECTIONURI + project + _build/results?buildId= |

The local checkout (any provider, or none) gives what is still missing: branch, commit sha,
message and author. The run's `source` is `github_action` inside GitHub Actions, else `cli`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from typing import Any

FIELDS = ("branch", "commit_sha", "commit_message", "commit_author", "ci_provider",
          "ci_build_id", "ci_build_url", "run_title")


def _strip_ref(ref: str | None) -> str | None:
    if not ref:
        return None
    for prefix in ("refs/heads/", "refs/tags/", "origin/"):
        if ref.startswith(prefix):
            return ref[len(prefix):]
    return ref


def _first(env: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        if env.get(name):
            return env[name]
    return None


def provider_values(env: Mapping[str, str]) -> dict[str, Any]:
    """The values the CI provider's environment states (empty outside CI)."""
    if env.get("GITHUB_ACTIONS") == "true":
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        run_id = env.get("GITHUB_RUN_ID")
        attempt = env.get("GITHUB_RUN_ATTEMPT")
        url = (f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{run_id}"
               if run_id and env.get("GITHUB_REPOSITORY") else None)
        title = " / ".join(v for v in (env.get("GITHUB_WORKFLOW"), env.get("GITHUB_JOB")) if v)
        return {"ci_provider": "github", "branch": _first(env, "GITHUB_HEAD_REF",
                                                          "GITHUB_REF_NAME"),
                "commit_sha": env.get("GITHUB_SHA"),
                "ci_build_id": f"{run_id}-{attempt}" if run_id and attempt else run_id,
                "ci_build_url": url, "run_title": title or None,
                "commit_author": env.get("GITHUB_ACTOR")}
    if env.get("GITLAB_CI") == "true":
        return {"ci_provider": "gitlab",
                "branch": _first(env, "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME",
                                 "CI_COMMIT_REF_NAME"),
                "commit_sha": env.get("CI_COMMIT_SHA"),
                "commit_message": env.get("CI_COMMIT_MESSAGE"),
                "commit_author": env.get("CI_COMMIT_AUTHOR"),
                "ci_build_id": env.get("CI_PIPELINE_ID"),
                "ci_build_url": env.get("CI_PIPELINE_URL"),
                "run_title": _first(env, "CI_MERGE_REQUEST_TITLE", "CI_JOB_NAME")}
    if env.get("CIRCLECI") == "true":
        return {"ci_provider": "circleci", "branch": env.get("CIRCLE_BRANCH"),
                "commit_sha": env.get("CIRCLE_SHA1"),
                "commit_author": env.get("CIRCLE_USERNAME"),
                "ci_build_id": _first(env, "CIRCLE_WORKFLOW_ID", "CIRCLE_BUILD_NUM"),
                "ci_build_url": env.get("CIRCLE_BUILD_URL"),
                "run_title": env.get("CIRCLE_JOB")}
    if env.get("JENKINS_URL"):
        return {"ci_provider": "jenkins",
                "branch": _strip_ref(_first(env, "CHANGE_BRANCH", "BRANCH_NAME",
                                            "GIT_BRANCH")),
                "commit_sha": env.get("GIT_COMMIT"),
                "ci_build_id": _first(env, "BUILD_TAG", "BUILD_NUMBER"),
                "ci_build_url": env.get("BUILD_URL"), "run_title": env.get("JOB_NAME")}
    if env.get("BUILDKITE") == "true":
        return {"ci_provider": "buildkite", "branch": env.get("BUILDKITE_BRANCH"),
                "commit_sha": env.get("BUILDKITE_COMMIT"),
                "commit_message": env.get("BUILDKITE_MESSAGE"),
                "commit_author": env.get("BUILDKITE_BUILD_AUTHOR"),
                "ci_build_id": env.get("BUILDKITE_BUILD_ID"),
                "ci_build_url": env.get("BUILDKITE_BUILD_URL"),
                "run_title": env.get("BUILDKITE_LABEL")}
    if env.get("TF_BUILD", "").lower() == "true":
        collection, project = env.get("SYSTEM_COLLECTIONURI"), env.get("SYSTEM_TEAMPROJECT")
        build = env.get("BUILD_BUILDID")
        url = (f"{collection.rstrip('/')}/{project}/_build/results?buildId={build}"
               if collection and project and build else None)
        return {"ci_provider": "azure",
                "branch": _strip_ref(_first(env, "SYSTEM_PULLREQUEST_SOURCEBRANCH",
                                            "BUILD_SOURCEBRANCH")),
                "commit_sha": env.get("BUILD_SOURCEVERSION"),
                "commit_message": env.get("BUILD_SOURCEVERSIONMESSAGE"),
                "commit_author": env.get("BUILD_REQUESTEDFOR"),
                "ci_build_id": build, "ci_build_url": url,
                "run_title": env.get("BUILD_DEFINITIONNAME")}
    return {}


def _git(*args: str, cwd: str | None = None) -> str | None:
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5,
                              check=False, cwd=cwd)
    except (OSError, subprocess.SubprocessError):
        return None
    value = done.stdout.strip()
    return value if done.returncode == 0 and value else None


def git_values(cwd: str | None = None) -> dict[str, Any]:
    """Branch, sha, message and author of the checkout in `cwd` (empty outside one)."""
    sha = _git("rev-parse", "HEAD", cwd=cwd)
    if sha is None:
        return {}
    branch = _git("rev-parse", "--abbrev-ref", "HEAD", cwd=cwd)
    return {"commit_sha": sha, "branch": None if branch == "HEAD" else branch,
            "commit_message": _git("log", "-1", "--format=%B", cwd=cwd),
            "commit_author": _git("log", "-1", "--format=%an", cwd=cwd)}


def detect(given: Mapping[str, Any], env: Mapping[str, str], *,
           cwd: str | None = None) -> dict[str, Any]:
    """The run's metadata: what the flags gave, then the provider's, then git's."""
    found = {k: v for k, v in provider_values(env).items() if v}
    if any(given.get(k) is None and found.get(k) is None
           for k in ("branch", "commit_sha", "commit_message", "commit_author")):
        found = {**{k: v for k, v in git_values(cwd).items() if v}, **found}
    values = {k: given[k] if given.get(k) is not None else found.get(k) for k in FIELDS}
    message = values.get("commit_message")
    if message:
        values["commit_message"] = str(message)[:10_000]
    values["source"] = "github_action" if env.get("GITHUB_ACTIONS") == "true" else "cli"
    return {k: v for k, v in values.items() if v is not None}
