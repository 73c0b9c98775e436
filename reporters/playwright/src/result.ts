/**
 * One Playwright test (all its attempts) as one Redline result: the batch endpoint's fields,
 * named and counted as an import of Playwright's JSON report names and counts the same test
 * (src/redline/server/imports/parsers/playwright_json.py), so a live run and an imported
 * report of the same tests have the same cases and the same counts.
 */
import { relative, sep } from "node:path";
import type { TestCase, TestError, TestResult, TestStep } from "@playwright/test/reporter";

// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;]*[A-Za-z]/g;
const MAX_TEXT = 5_000_000;
const MAX_STEPS = 10_000;

export function stripAnsi(text: string | undefined): string | undefined {
  return text === undefined ? undefined : text.replace(ANSI, "");
}

/** A path as Redline stores it: relative to Playwright's rootDir, '/' separators. */
export function relativePath(file: string, rootDir: string): string {
  const rel = relative(rootDir, file);
  const path = rel && !rel.startsWith("..") ? rel : file;
  return path.split(sep).join("/");
}

export type Json = Record<string, any>;

/** The describe blocks around a test, outermost first (not the project or the file). */
export function suitePath(test: TestCase): string[] {
  const titles: string[] = [];
  for (let suite = test.parent; suite && suite.type === "describe"; suite = suite.parent!) {
    titles.unshift(suite.title);
  }
  return titles;
}

function errorJson(error: TestError, rootDir: string): Json {
  const message = stripAnsi(error.message ?? error.value ?? "") || "failed";
  const stack = stripAnsi(error.stack);
  const out: Json = { message: message.slice(0, 100_000) };
  if (stack) out.stack = stack.slice(0, 1_000_000);
  const type = /^([A-Za-z_$][\w$.]*)(?::|$)/.exec(stack ?? message)?.[1];
  if (type) out.type = type.slice(0, 255);
  const expected = /^\s*Expected[^:\n]*:\s*(.*)$/m.exec(message)?.[1];
  const actual = /^\s*Received[^:\n]*:\s*(.*)$/m.exec(message)?.[1];
  if (expected !== undefined) out.expected = expected.slice(0, 100_000);
  if (actual !== undefined) out.actual = actual.slice(0, 100_000);
  if (error.location) {
    out.location = { file: relativePath(error.location.file, rootDir),
      line: error.location.line, column: error.location.column };
  }
  return out;
}

function stepJson(step: TestStep, rootDir: string, budget: { left: number }): Json {
  budget.left -= 1;
  const out: Json = { title: step.title.slice(0, 10_000), category: step.category,
    status: step.error ? "failed" : "passed", duration: Math.max(0, Math.round(step.duration)) };
  if (step.error) out.error = errorJson(step.error, rootDir);
  if (step.location) {
    out.location = { file: relativePath(step.location.file, rootDir), line: step.location.line };
  }
  const children: Json[] = [];
  for (const child of step.steps) {
    if (budget.left <= 0) break;
    children.push(stepJson(child, rootDir, budget));
  }
  out.steps = children;
  return out;
}

function output(results: TestResult[], key: "stdout" | "stderr"): string {
  const text = results.map((r) => r[key].map((chunk) => chunk.toString()).join("")).join("");
  return text.slice(0, MAX_TEXT);
}

function attemptStatus(result: TestResult): "passed" | "failed" | "skipped" {
  if (result.status === "skipped") return "skipped";
  return result.status === "passed" ? "passed" : "failed";
}

/** Playwright's outcome as Redline's status: expected -> passed, unexpected -> failed,
 * flaky -> passed with isFlaky (stored as flaky), skipped -> skipped. */
export function buildResult(test: TestCase, rootDir: string, projectName: string | undefined): Json {
  const results = test.results;
  const outcome = test.outcome();
  const status = outcome === "skipped" ? "skipped" : outcome === "unexpected" ? "failed" : "passed";
  const suites = suitePath(test);
  const attempts = Math.max(results.length, 1);
  const result: Json = {
    title: test.title || "(untitled)",
    fullTitle: [...suites, test.title].join(" > ") || "(untitled)",
    suitePath: suites,
    filePath: relativePath(test.location.file, rootDir),
    lineNumber: test.location.line,
    status,
    duration: results.reduce((sum, r) => sum + Math.max(0, Math.round(r.duration)), 0),
    attempt: outcome === "skipped" ? 1 : attempts,
    retries: outcome === "skipped" ? 0 : attempts - 1,
    isFlaky: outcome === "flaky",
    tags: [...new Set(test.tags.map((t) => t.replace(/^@/, "")).filter(Boolean))].slice(0, 100),
    annotations: test.annotations.slice(0, 100).map((a) => ({ type: a.type,
      description: a.description ?? null })),
    stdout: output(results, "stdout"),
    stderr: output(results, "stderr"),
  };
  if (projectName) result.variant = projectName;
  if (results.length === 0) {
    result.annotations.push({ type: "did-not-run",
      description: "Playwright did not run it (the run stopped first)" });
  }
  if (status !== "skipped") {
    const failing = results.filter((r) => r.errors.length || r.error);
    const last = failing[failing.length - 1];
    if (last) result.error = errorJson(last.errors[0] ?? last.error!, rootDir);
    else if (status === "failed" && test.expectedStatus === "failed") {
      result.error = { message: "Expected to fail, but passed.", type: "expected-failure" };
    } else if (status === "failed" && results.length) {
      const final = results[results.length - 1];
      result.error = { message: `Test ${final.status}`, type: final.status };
    }
  }
  const budget = { left: MAX_STEPS };
  if (results.length > 1) {
    // retries: one step per attempt, each holding that attempt's steps
    result.steps = results.map((r, index) => {
      const step: Json = { title: `attempt ${index + 1}`, category: "attempt",
        status: attemptStatus(r), duration: Math.max(0, Math.round(r.duration)) };
      const error = r.errors[0] ?? r.error;
      if (error) step.error = errorJson(error, rootDir);
      step.steps = r.steps.map((s) => stepJson(s, rootDir, budget));
      return step;
    });
  } else if (results.length === 1) {
    result.steps = results[0].steps.filter(() => budget.left > 0)
      .map((s) => stepJson(s, rootDir, budget));
  }
  return result;
}

/** The Redline artifact type of a Playwright attachment, or undefined (not uploaded). */
export function artifactType(name: string, contentType: string): string | undefined {
  if (contentType.startsWith("image/")) return "screenshot";
  if (contentType.startsWith("video/")) return "video";
  if (name === "trace" || contentType === "application/zip") return "trace";
  return undefined;
}
