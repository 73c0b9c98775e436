/**
 * Spool files: what the reporter could not send, kept to be sent later by
 * `redline upload --spool DIR`. The same format as the pytest plugin's (src/redline/spool.py),
 * one JSON object a line:
 *
 * - `{"type": "run", "session", "runId" (or null), "fields"}`: the run (its id when it was
 *   created before the outage, else the fields to create it with, in the SDK's snake_case);
 * - `{"type": "tests", "seq", "tests": [...]}`: one batch of results (the batch endpoint's);
 * - `{"type": "finish", "status", "shardCurrent", "duration"}`: the run ended.
 *
 * Requests carry the Idempotency-Key `redline-spool:<session>:<what>`, the same live and on
 * replay: a batch that reached the server before the outage is stored once.
 */
import { appendFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";

export function spoolKey(session: string, what: string): string {
  return `redline-spool:${session}:${what}`;
}

export class SpoolWriter {
  readonly path: string;
  runId: string | null = null;
  results = 0;
  private started = false;

  constructor(directory: string, private readonly session: string,
    private readonly runFields: Record<string, unknown>) {
    this.path = join(directory, `${session}.jsonl`);
    this.directory = directory;
  }

  private readonly directory: string;

  get used(): boolean {
    return this.started;
  }

  private write(record: Record<string, unknown>): void {
    if (!this.started) {
      mkdirSync(this.directory, { recursive: true });
      appendFileSync(this.path, JSON.stringify({ type: "run", session: this.session,
        runId: this.runId, fields: this.runFields }) + "\n");
      this.started = true;
    }
    appendFileSync(this.path, JSON.stringify(record) + "\n");
  }

  tests(seq: number, tests: unknown[]): void {
    this.write({ type: "tests", seq, tests });
    this.results += tests.length;
  }

  finish(fields: Record<string, unknown>): void {
    const record: Record<string, unknown> = { type: "finish" };
    for (const [k, v] of Object.entries(fields)) if (v !== undefined && v !== null) record[k] = v;
    this.write(record);
  }
}
