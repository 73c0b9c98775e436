/**
 * Redline's Playwright reporter: sends each test's result to Redline as the test ends, from
 * the reporter's process, without ever failing or holding up the run.
 *
 *   reporter: [['list'], ['@redline/playwright-reporter', { projectId: '...' }]]
 *
 * - The run is created (or, for a shard of a CI build, joined by build id) when the run
 *   begins; results go in batches (`POST /api/runs/{id}/tests/batch`) at most a second after
 *   their test ends, on Node's event loop: the test workers never wait on the network.
 * - One result per test: retries are its attempts (flaky when it passed on a retry), with
 *   title path, project (the variant), tags, annotations, nested steps, the error with its
 *   location, stdout/stderr; screenshots, videos and traces are uploaded and linked to it.
 * - Redline unreachable, or answering errors: what was not sent goes to a spool file
 *   (`.redline/spool/` beside the Playwright config), with copies of its screenshots, videos
 *   and traces, which `redline upload --spool DIR` sends; the run's exit status stays
 *   Playwright's own, and a summary line says so.
 * - Shards (`--shard 2/3`) of one CI build join one run; the last shard to finish completes
 *   it (or, when one never reports, the server's shard timeout does).
 */
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { dirname, join, resolve } from "node:path";
import type { FullConfig, FullResult, Reporter, Suite, TestCase, TestResult }
  from "@playwright/test/reporter";
import { clean, detect, RunFields } from "./ci";
import { Client, RedlineError } from "./client";
import { artifactType, buildResult, Json } from "./result";
import { SpoolAttachment, SpoolWriter, spoolKey } from "./spool";

export interface RedlineReporterOptions {
  /** Redline's URL (default: $REDLINE_URL, else http://127.0.0.1:8000). */
  url?: string;
  /** A project API key (default: $REDLINE_API_KEY); the project is implied. */
  apiKey?: string;
  /** A personal token instead of a key (default: $REDLINE_TOKEN); needs `projectId`. */
  token?: string;
  /** The project (default: $REDLINE_PROJECT; a project key implies its own). */
  projectId?: string;
  /** The CI build id shards join on (default: the CI provider's, as `redline upload` finds). */
  buildId?: string;
  branch?: string;
  commitSha?: string;
  runTitle?: string;
  tags?: string[];
  /** Seconds to wait for each answer (default: $REDLINE_TIMEOUT, else 30). */
  timeout?: number;
  /** Where unsent results go (default: `.redline/spool` beside the Playwright config). */
  spoolDir?: string;
  /** Upload screenshots, videos and traces (default true). */
  attachments?: boolean;
  /** Results per request (default 100; the endpoint takes up to 1,000). */
  batchSize?: number;
  /** Turn the reporter off (default: on when a key or token is set). */
  enabled?: boolean;
}

const FLUSH_MS = 1000; // a partial batch waits at most this long
const MAX_BACKLOG = 200; // batches waiting for the sender, at most: more go to the spool
const DEFAULT_URL = "http://127.0.0.1:8000";
const DEFAULT_TIMEOUT = 30;

interface Queued {
  result: Json;
  attachments: TestResult["attachments"];
}

export default class RedlineReporter implements Reporter {
  private readonly options: RedlineReporterOptions;
  private readonly session = randomUUID().replace(/-/g, "");
  private client!: Client;
  private spool!: SpoolWriter;
  private fields: RunFields = {};
  private rootDir = process.cwd();
  private enabled = true;
  private runId: string | null = null;
  private problem: string | null = null;
  private runReady: Promise<void> = Promise.resolve();
  /** requests in order: results, then the finish */
  private chain: Promise<void> = Promise.resolve();
  /** uploads run beside the results, so a big video never holds a batch back */
  private uploads: Promise<void> = Promise.resolve();
  private queue: Queued[] = [];
  private timer: NodeJS.Timeout | undefined;
  private seq = 0;
  /** batches handed to the sender and not sent yet */
  private backlog = 0;
  private sent = 0;
  private uploaded = 0;
  private uploadFailures: string[] = [];
  /** why an upload found Redline away (its file went to the spool) */
  private uploadProblem: string | null = null;
  private failed = false;
  private finishSpooled = false;
  private readonly reported = new Set<string>();
  /** tests whose last attempt failed with a retry still to come */
  private readonly waiting = new Map<string, TestCase>();
  private suite: Suite | undefined;
  private started = Date.now();
  private timeoutSeconds = DEFAULT_TIMEOUT;

  constructor(options: RedlineReporterOptions = {}) {
    this.options = options;
  }

  printsToStdio(): boolean {
    return false; // Playwright keeps its own list/line/dot output beside this reporter
  }

  onBegin(config: FullConfig, suite: Suite): void {
    try {
      this.begin(config, suite);
    } catch (err) {
      this.disable(err);
    }
  }

  /** A fault of the reporter itself never fails the run: it stops reporting and says why. */
  private disable(err: unknown): void {
    this.enabled = false;
    log(`Redline: the reporter stopped (${describe(err)}); the run goes on unreported`);
  }

  private begin(config: FullConfig, suite: Suite): void {
    const env = process.env;
    const o = this.options;
    const apiKey = o.apiKey ?? env.REDLINE_API_KEY;
    const token = o.token ?? env.REDLINE_TOKEN;
    // `playwright test --list` shows the tests without running them: nothing to report
    const listing = process.argv.includes("--list");
    this.enabled = !listing && (o.enabled ?? Boolean(apiKey || token));
    if (!this.enabled) {
      if (o.enabled !== false && !listing) {
        log("Redline: no REDLINE_API_KEY (or apiKey option): results are not reported");
      }
      return;
    }
    this.suite = suite;
    this.started = Date.now();
    this.rootDir = config.rootDir;
    const timeout = o.timeout ?? Number(env.REDLINE_TIMEOUT);
    this.timeoutSeconds = Number.isFinite(timeout) && timeout > 0 ? timeout : DEFAULT_TIMEOUT;
    this.client = new Client({ url: o.url ?? env.REDLINE_URL ?? DEFAULT_URL, apiKey, token,
      timeoutSeconds: this.timeoutSeconds });
    const base = config.configFile ? dirname(config.configFile) : process.cwd();
    const spoolDir = o.spoolDir ? resolve(o.spoolDir) : join(base, ".redline", "spool");
    this.fields = this.runFields(config, base);
    this.spool = new SpoolWriter(spoolDir, this.session, this.fields);
    this.runReady = this.createRun();
  }

  private runFields(config: FullConfig, cwd: string): RunFields {
    const o = this.options;
    const fields: RunFields = detect(clean({ branch: o.branch, commit_sha: o.commitSha,
      run_title: o.runTitle, ci_build_id: o.buildId }), process.env, cwd);
    fields.source = "reporter";
    fields.playwright_version = config.version;
    fields.workers = (config as any).metadata?.actualWorkers ?? config.workers;
    fields.hostname = hostname().slice(0, 255);
    fields.os = process.platform;
    if (o.tags?.length) fields.tags = o.tags;
    if (config.shard) {
      if (fields.ci_build_id) {
        fields.shard_current = config.shard.current;
        fields.shard_total = config.shard.total;
      } else {
        log(`Redline: --shard ${config.shard.current}/${config.shard.total} without a CI ` +
          "build id: this shard is reported as a run of its own (set the buildId option, " +
          "or run in CI, to join the shards into one run)");
      }
    }
    return fields;
  }

  private async createRun(): Promise<void> {
    const projectId = this.options.projectId ?? process.env.REDLINE_PROJECT;
    const body: Json = { status: "running", ...camel(this.fields) };
    if (projectId) body.projectId = projectId;
    try {
      const run = await this.client.json("POST", "/api/runs", body, spoolKey(this.session, "run"));
      this.runId = this.spool.runId = run.id;
    } catch (err) {
      this.problem = describe(err);
    }
  }

  // -- Playwright's calls: only the queue ------------------------------------------------------

  onTestEnd(test: TestCase, result: TestResult): void {
    if (!this.enabled) return;
    try {
      this.testEnded(test, result);
    } catch (err) {
      this.disable(err);
    }
  }

  private testEnded(test: TestCase, result: TestResult): void {
    const ok = result.status === test.expectedStatus || result.status === "skipped";
    if (!ok && result.retry < test.retries && result.status !== "interrupted") {
      this.waiting.set(test.id, test); // a retry comes: the test is one result, sent after it
      return;
    }
    this.waiting.delete(test.id);
    this.put(test);
  }

  private put(test: TestCase): void {
    if (this.reported.has(test.id)) return;
    this.reported.add(test.id);
    const projectName = test.parent.project()?.name || undefined;
    const result = buildResult(test, this.rootDir, projectName);
    if (result.status === "failed") this.failed = true;
    const attachments = this.options.attachments === false ? []
      : test.results.flatMap((r) => r.attachments);
    this.queue.push({ result, attachments });
    if (this.queue.length >= this.batchSize()) this.flush();
    else if (!this.timer) {
      this.timer = setTimeout(() => {
        try { this.flush(); } catch (err) { this.disable(err); }
      }, FLUSH_MS);
    }
  }

  private batchSize(): number {
    return Math.min(Math.max(this.options.batchSize ?? 100, 1), 1000);
  }

  /** Hands the queued results to the sender (requests go one after another). */
  private flush(): void {
    if (this.timer) { clearTimeout(this.timer); this.timer = undefined; }
    while (this.queue.length) {
      const batch = this.queue.splice(0, this.batchSize());
      const seq = ++this.seq;
      if (this.backlog >= MAX_BACKLOG) { // Redline is far behind: never hold the results
        this.problem = this.problem ?? "Redline is too slow to keep up";
        this.spool.tests(seq, batch.map((q) => q.result), batch.map(spoolable));
        continue;
      }
      this.backlog += 1;
      this.chain = this.chain.then(() => this.send(seq, batch)).catch((err) => {
        this.problem = this.problem ?? describe(err); // e.g. the spool's disk is full
      }).finally(() => { this.backlog -= 1; });
    }
  }

  private async send(seq: number, batch: Queued[]): Promise<void> {
    await this.runReady;
    const tests = batch.map((q) => q.result);
    if (this.runId === null || this.problem !== null) {
      this.spool.tests(seq, tests, batch.map(spoolable));
      return;
    }
    try {
      const answer = await this.client.json("POST", `/api/runs/${this.runId}/tests/batch`,
        { tests }, spoolKey(this.session, `tests:${seq}`));
      this.sent += tests.length;
      const ids: string[] = answer?.ids ?? [];
      batch.forEach((q, index) => {
        if (ids[index] && q.attachments.length) this.upload(ids[index], q.attachments);
      });
    } catch (err) {
      this.problem = describe(err);
      this.spool.tests(seq, tests, batch.map(spoolable));
    }
  }

  private upload(testId: string, attachments: TestResult["attachments"]): void {
    const runId = this.runId!;
    for (const a of attachments) {
      const type = artifactType(a.name, a.contentType);
      if (!type || (!a.path && !a.body)) continue;
      this.uploads = this.uploads.then(async () => {
        try {
          await this.client.upload({ path: a.path, body: a.body, name: a.name,
            contentType: a.contentType }, type, runId, testId);
          this.uploaded += 1;
        } catch (err) {
          if (!away(err)) {
            this.uploadFailures.push(`${a.path ?? a.name}: ${describe(err)}`);
            return;
          }
          // its result is stored: the file waits in the spool for `redline upload --spool`
          this.uploadProblem = this.uploadProblem ?? describe(err);
          this.spool.attachmentOf(testId, { name: a.name, contentType: a.contentType,
            path: a.path, body: a.body, type });
        }
      });
    }
  }

  // -- the end ---------------------------------------------------------------------------------

  async onEnd(result: FullResult): Promise<void> {
    if (!this.enabled) return;
    try {
      await this.end(result);
    } catch (err) {
      log(`Redline: the reporter failed at the end (${describe(err)})`);
    }
  }

  private async end(result: FullResult): Promise<void> {
    // a test whose retry never came (the run stopped first), and tests that never ran
    for (const test of this.waiting.values()) this.put(test);
    this.waiting.clear();
    for (const test of this.suite?.allTests() ?? []) {
      if (!this.reported.has(test.id) && test.results.length === 0) this.put(test);
    }
    this.flush();
    const duration = Date.now() - this.started;
    const status = result.status === "passed" && !this.failed ? "passed" : "failed";
    const finished = this.chain.then(() => this.finish(status, duration))
      .then(() => this.uploads);
    // Redline that never answers holds the end at most this long; what is left is spooled
    const limit = Math.max(30, this.timeoutSeconds * 4) * 1000;
    let deadline: NodeJS.Timeout | undefined;
    const late = new Promise<boolean>((done) => { deadline = setTimeout(() => done(false), limit); });
    const inTime = await Promise.race([finished.then(() => true, () => true), late]);
    clearTimeout(deadline);
    if (!inTime) {
      this.problem = this.problem ?? "Redline did not answer in time";
      if (!this.finishSpooled) this.spoolFinish(status, duration);
    }
    this.summary();
  }

  private spoolFinish(status: string, duration: number): void {
    this.finishSpooled = true;
    this.spool.finish({ status, shardCurrent: this.fields.shard_current, duration });
  }

  private async finish(status: string, duration: number): Promise<void> {
    await this.runReady;
    // spooled results come before the finish; attachments spooled alone do not hold it back
    if (this.runId === null || this.problem !== null || this.spool.results > 0) {
      this.spoolFinish(status, duration);
      return;
    }
    const body: Json = { status };
    if (this.fields.shard_current !== undefined) body.shardCurrent = this.fields.shard_current;
    else body.duration = duration; // a sharded run's duration is its shards' results
    try {
      await this.client.json("PATCH", `/api/runs/${this.runId}`, body,
        spoolKey(this.session, "finish"));
    } catch (err) {
      this.problem = describe(err);
      this.spoolFinish(status, duration);
    }
  }

  private summary(): void {
    if (this.spool.results > 0 || this.finishSpooled) {
      log(`Redline: ${this.spool.results} results spooled to ${this.spool.path}` +
        (this.problem ? ` (${this.problem})` : ""));
      if (this.spool.attachments) {
        log(`Redline: ${this.spool.attachments} attachments kept with them in ` +
          dirname(this.spool.path));
      }
      log(`Redline: send them with \`redline upload --spool ${dirname(this.spool.path)}\``);
      if (this.sent) log(`Redline: ${this.sent} results were sent to run ${this.runId} before`);
      this.summaryOfUploads();
      return;
    }
    if (this.runId) {
      const shard = this.fields.shard_current !== undefined
        ? ` (shard ${this.fields.shard_current}/${this.fields.shard_total})` : "";
      log(`Redline: ${this.sent} results sent to run ${this.runId}${shard}` +
        (this.uploaded ? `, ${this.uploaded} attachments uploaded` : ""));
    }
    this.summaryOfUploads();
    if (this.spool.uploadsKept) {
      log(`Redline: ${this.spool.uploadsKept} attachments found Redline away ` +
        `(${this.uploadProblem}) and were spooled to ${this.spool.path}`);
      log(`Redline: send them with \`redline upload --spool ${dirname(this.spool.path)}\``);
    }
  }

  private summaryOfUploads(): void {
    for (const failure of this.uploadFailures.slice(0, 5)) {
      log(`Redline: an attachment was not uploaded: ${failure}`);
    }
    for (const lost of this.spool.lost.slice(0, 5)) {
      log(`Redline: an attachment could not be kept in the spool: ${lost}`);
    }
  }
}

/** The attachments of a queued result the spool keeps: those a live run would upload. */
function spoolable(queued: Queued): SpoolAttachment[] {
  const kept: SpoolAttachment[] = [];
  for (const a of queued.attachments) {
    const type = artifactType(a.name, a.contentType);
    if (type && (a.path || a.body)) {
      kept.push({ name: a.name, contentType: a.contentType, path: a.path, body: a.body, type });
    }
  }
  return kept;
}

/** An upload's error that another try later may get past: Redline away, busy or failing. */
function away(err: unknown): boolean {
  if (!(err instanceof RedlineError)) return false;
  if (err.code === "NETWORK_ERROR" || err.code === "TIMEOUT") return true;
  return err.status !== undefined && (err.status >= 500 || err.status === 429 || err.status === 408);
}

function camel(fields: RunFields): Json {
  const out: Json = {};
  for (const [k, v] of Object.entries(fields)) {
    if (v !== undefined) out[k.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase())] = v;
  }
  return out;
}

function describe(err: unknown): string {
  if (err instanceof RedlineError) return err.describe();
  return err instanceof Error ? err.message : String(err);
}

function log(line: string): void {
  process.stdout.write(line + "\n");
}
