/**
 * Spool files: what the reporter could not send, kept to be sent later by
 * `redline upload --spool DIR`. The same format as the pytest plugin's (src/redline/spool.py),
 * one JSON object a line:
 *
 * - `{"type": "run", "session", "runId" (or null), "fields", "format": 2}`: the run (its id
 *   when it was created before the outage, else the fields to create it with, in the SDK's
 *   snake_case);
 * - `{"type": "tests", "seq", "tests": [...], "attachments": [...]}`: one batch of results (the
 *   batch endpoint's) and their screenshots, videos and traces, each
 *   `{"test": index in tests, "path": relative to the spool's folder, "name", "contentType",
 *   "type"}`. The files are copied to `<session>/attachments/<seq>/<test>-<n>/` beside the
 *   spool file before the line is written: the next run may clean `test-results/`;
 * - `{"type": "attachments", "seq", "attachments": [...]}`: files of results that were sent,
 *   whose upload found Redline away; each names its result by `testId` instead of `test`;
 * - `{"type": "finish", "status", "shardCurrent", "duration"}`: the run ended.
 *
 * Requests carry the Idempotency-Key `redline-spool:<session>:<what>`, the same live and on
 * replay: a batch that reached the server before the outage is stored once.
 */
import { appendFileSync, copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";

/** What `redline upload --spool` reads: 2 added the attachments. */
export const SPOOL_FORMAT = 2;

export function spoolKey(session: string, what: string): string {
  return `redline-spool:${session}:${what}`;
}

/** A test's file to keep: a path on disk, or the body Playwright holds in memory. */
export interface SpoolAttachment {
  name: string;
  contentType: string;
  path?: string;
  body?: Buffer;
  /** the artifact type: screenshot, video or trace (as a live upload) */
  type: string;
}

export class SpoolWriter {
  readonly path: string;
  runId: string | null = null;
  results = 0;
  /** attachments kept with spooled results, and kept alone (their result was sent) */
  attachments = 0;
  uploadsKept = 0;
  private uploadSeq = 0;
  /** attachments that could not be copied (the file was gone), with why */
  readonly lost: string[] = [];
  private started = false;

  constructor(private readonly directory: string, private readonly session: string,
    private readonly runFields: Record<string, unknown>) {
    this.path = join(directory, `${session}.jsonl`);
  }

  get used(): boolean {
    return this.started;
  }

  private write(record: Record<string, unknown>): void {
    this.start();
    appendFileSync(this.path, JSON.stringify(record) + "\n");
  }

  private start(): void {
    if (this.started) return;
    mkdirSync(this.directory, { recursive: true });
    appendFileSync(this.path, JSON.stringify({ type: "run", session: this.session,
      runId: this.runId, fields: this.runFields, format: SPOOL_FORMAT }) + "\n");
    this.started = true;
  }

  /** One batch; `attachments[i]` are the files of `tests[i]`. */
  tests(seq: number, tests: unknown[], attachments: SpoolAttachment[][] = []): void {
    this.start();
    const kept = attachments.flatMap((files, test) => files.flatMap((file, n) =>
      this.keep(join(String(seq), `${test}-${n}`), file).map((entry) => ({ test, ...entry }))));
    const record: Record<string, unknown> = { type: "tests", seq, tests };
    if (kept.length) record.attachments = kept;
    this.write(record);
    this.results += tests.length;
    this.attachments += kept.length;
  }

  /** An attachment of a result that was sent, whose upload found Redline away. */
  attachmentOf(testId: string, file: SpoolAttachment): void {
    this.start();
    const seq = ++this.uploadSeq;
    const kept = this.keep(join("uploads", String(seq)), file)
      .map((entry) => ({ testId, ...entry }));
    if (!kept.length) return;
    this.write({ type: "attachments", seq, attachments: kept });
    this.uploadsKept += 1;
  }

  /** Copies one file into the spool folder; the line that names it is written after. */
  private keep(under: string, file: SpoolAttachment): object[] {
    const folder = join(this.session, "attachments", under);
    const name = safeName(file.path ? basename(file.path) : file.name, file.contentType);
    const relative = join(folder, name);
    try {
      mkdirSync(join(this.directory, folder), { recursive: true });
      if (file.path) copyFileSync(file.path, join(this.directory, relative));
      else writeFileSync(join(this.directory, relative), file.body ?? Buffer.alloc(0));
    } catch (err) {
      this.lost.push(`${file.path ?? file.name}: ${err instanceof Error ? err.message : err}`);
      return [];
    }
    return [{ path: relative.split("\\").join("/"), name: file.name,
      contentType: file.contentType, type: file.type }];
  }

  finish(fields: Record<string, unknown>): void {
    const record: Record<string, unknown> = { type: "finish" };
    for (const [k, v] of Object.entries(fields)) if (v !== undefined && v !== null) record[k] = v;
    this.write(record);
  }
}

/** A file name that stays in its folder (an attachment's name is the test author's). */
function safeName(name: string, contentType: string): string {
  const cleaned = name.replace(/[^A-Za-z0-9._-]+/g, "_").replace(/^\.+/, "").slice(0, 100);
  if (cleaned) return cleaned;
  return contentType.startsWith("image/") ? "attachment.png" : "attachment";
}
