/**
 * What a run was: branch, commit, build id and URL, provider and title, detected from the CI
 * provider's environment, else from the local git checkout. The same table as the CLI's
 * `redline upload` (src/redline/cli/ci.py), so a live run and an imported report of one CI
 * build carry the same build id and join one run.
 */
import { execFileSync } from "node:child_process";

export type RunFields = Record<string, string | number | string[] | undefined>;
type Env = Record<string, string | undefined>;

const FIELDS = ["branch", "commit_sha", "commit_message", "commit_author", "ci_provider",
  "ci_build_id", "ci_build_url", "run_title"];

function stripRef(ref: string | undefined): string | undefined {
  if (!ref) return undefined;
  for (const prefix of ["refs/heads/", "refs/tags/", "origin/"]) {
    if (ref.startsWith(prefix)) return ref.slice(prefix.length);
  }
  return ref;
}

function first(env: Env, ...names: string[]): string | undefined {
  for (const name of names) if (env[name]) return env[name];
  return undefined;
}

/** The values the CI provider's environment states (empty outside CI). */
export function providerValues(env: Env): RunFields {
  if (env.GITHUB_ACTIONS === "true") {
    const server = env.GITHUB_SERVER_URL || "https://github.com";
    const runId = env.GITHUB_RUN_ID;
    const attempt = env.GITHUB_RUN_ATTEMPT;
    const title = [env.GITHUB_WORKFLOW, env.GITHUB_JOB].filter(Boolean).join(" / ");
    return {
      ci_provider: "github", branch: first(env, "GITHUB_HEAD_REF", "GITHUB_REF_NAME"),
      commit_sha: env.GITHUB_SHA,
      ci_build_id: runId && attempt ? `${runId}-${attempt}` : runId,
      ci_build_url: runId && env.GITHUB_REPOSITORY
        ? `${server}/${env.GITHUB_REPOSITORY}/actions/runs/${runId}` : undefined,
      run_title: title || undefined, commit_author: env.GITHUB_ACTOR,
    };
  }
  if (env.GITLAB_CI === "true") {
    return {
      ci_provider: "gitlab",
      branch: first(env, "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", "CI_COMMIT_REF_NAME"),
      commit_sha: env.CI_COMMIT_SHA, commit_message: env.CI_COMMIT_MESSAGE,
      commit_author: env.CI_COMMIT_AUTHOR, ci_build_id: env.CI_PIPELINE_ID,
      ci_build_url: env.CI_PIPELINE_URL,
      run_title: first(env, "CI_MERGE_REQUEST_TITLE", "CI_JOB_NAME"),
    };
  }
  if (env.CIRCLECI === "true") {
    return {
      ci_provider: "circleci", branch: env.CIRCLE_BRANCH, commit_sha: env.CIRCLE_SHA1,
      commit_author: env.CIRCLE_USERNAME,
      ci_build_id: first(env, "CIRCLE_WORKFLOW_ID", "CIRCLE_BUILD_NUM"),
      ci_build_url: env.CIRCLE_BUILD_URL, run_title: env.CIRCLE_JOB,
    };
  }
  if (env.JENKINS_URL) {
    return {
      ci_provider: "jenkins",
      branch: stripRef(first(env, "CHANGE_BRANCH", "BRANCH_NAME", "GIT_BRANCH")),
      commit_sha: env.GIT_COMMIT, ci_build_id: first(env, "BUILD_TAG", "BUILD_NUMBER"),
      ci_build_url: env.BUILD_URL, run_title: env.JOB_NAME,
    };
  }
  if (env.BUILDKITE === "true") {
    return {
      ci_provider: "buildkite", branch: env.BUILDKITE_BRANCH, commit_sha: env.BUILDKITE_COMMIT,
      commit_message: env.BUILDKITE_MESSAGE, commit_author: env.BUILDKITE_BUILD_AUTHOR,
      ci_build_id: env.BUILDKITE_BUILD_ID, ci_build_url: env.BUILDKITE_BUILD_URL,
      run_title: env.BUILDKITE_LABEL,
    };
  }
  if ((env.TF_BUILD || "").toLowerCase() === "true") {
    const collection = env.SYSTEM_COLLECTIONURI;
    const project = env.SYSTEM_TEAMPROJECT;
    const build = env.BUILD_BUILDID;
    return {
      ci_provider: "azure",
      branch: stripRef(first(env, "SYSTEM_PULLREQUEST_SOURCEBRANCH", "BUILD_SOURCEBRANCH")),
      commit_sha: env.BUILD_SOURCEVERSION, commit_message: env.BUILD_SOURCEVERSIONMESSAGE,
      commit_author: env.BUILD_REQUESTEDFOR, ci_build_id: build,
      ci_build_url: collection && project && build
        ? `${collection.replace(/\/+$/, "")}/${project}/_build/results?buildId=${build}`
        : undefined,
      run_title: env.BUILD_DEFINITIONNAME,
    };
  }
  return {};
}

function git(cwd: string, ...args: string[]): string | undefined {
  try {
    const out = execFileSync("git", args, { cwd, timeout: 5000, encoding: "utf-8",
      stdio: ["ignore", "pipe", "ignore"] }).trim();
    return out || undefined;
  } catch {
    return undefined;
  }
}

/** Branch, sha, message and author of the checkout in `cwd` (empty outside one). */
export function gitValues(cwd: string): RunFields {
  const sha = git(cwd, "rev-parse", "HEAD");
  if (!sha) return {};
  const branch = git(cwd, "rev-parse", "--abbrev-ref", "HEAD");
  return {
    commit_sha: sha, branch: branch === "HEAD" ? undefined : branch,
    commit_message: git(cwd, "log", "-1", "--format=%B"),
    commit_author: git(cwd, "log", "-1", "--format=%an"),
  };
}

/** The run's metadata: what the options gave, then the provider's, then git's. */
export function detect(given: RunFields, env: Env, cwd: string): RunFields {
  let found: RunFields = clean(providerValues(env));
  if (["branch", "commit_sha", "commit_message", "commit_author"].some(
    (k) => given[k] === undefined && found[k] === undefined)) {
    found = { ...clean(gitValues(cwd)), ...found };
  }
  const values: RunFields = {};
  for (const k of FIELDS) values[k] = given[k] !== undefined ? given[k] : found[k];
  if (typeof values.commit_message === "string") {
    values.commit_message = values.commit_message.slice(0, 10_000);
  }
  return clean(values);
}

export function clean<T extends Record<string, unknown>>(values: T): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(values)) {
    if (v !== undefined && v !== null && v !== "") out[k] = v;
  }
  return out as T;
}
