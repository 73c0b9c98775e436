/**
 * The few REST calls a live reporter makes (the same endpoints the Python SDK and the pytest
 * plugin use): create or join a run, send a batch of results, upload an artifact, finish.
 * Every write but an upload carries an Idempotency-Key, so a retried request (here, or a
 * spool replayed by `redline upload --spool`) is stored once.
 */
import { openAsBlob } from "node:fs";
import { readFile } from "node:fs/promises";
import { basename } from "node:path";

export class RedlineError extends Error {
  constructor(readonly code: string, message: string, readonly status?: number) {
    super(message);
  }

  /** `CODE: message`, as the summary line shows it. */
  describe(): string {
    return `${this.code}: ${this.message}`;
  }
}

export interface ClientOptions {
  url: string;
  apiKey?: string;
  token?: string;
  timeoutSeconds: number;
}

/** Answers worth one more try: the server was busy or briefly away. */
const RETRYABLE = new Set([429, 502, 503, 504]);

export class Client {
  private readonly base: string;

  constructor(private readonly options: ClientOptions) {
    this.base = options.url.replace(/\/+$/, "");
  }

  private headers(idempotencyKey?: string): Record<string, string> {
    const headers: Record<string, string> = { "User-Agent": "redline-playwright-reporter" };
    if (this.options.apiKey) headers["X-API-Key"] = this.options.apiKey;
    else if (this.options.token) headers.Authorization = `Bearer ${this.options.token}`;
    if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
    return headers;
  }

  /** One JSON request; a network error or a busy answer is tried once more. */
  async json(method: string, path: string, body: unknown, idempotencyKey?: string): Promise<any> {
    const headers = { ...this.headers(idempotencyKey), "Content-Type": "application/json" };
    const payload = JSON.stringify(body);
    for (let attempt = 1; ; attempt++) {
      let response: Response;
      try {
        response = await fetch(this.base + path, { method, headers, body: payload,
          signal: AbortSignal.timeout(this.options.timeoutSeconds * 1000) });
      } catch (err) {
        if (attempt < 2) { await sleep(500); continue; }
        throw networkError(err, this.base);
      }
      if (RETRYABLE.has(response.status) && attempt < 2) {
        await response.arrayBuffer().catch(() => undefined);
        await sleep(retryAfter(response));
        continue;
      }
      return answer(response);
    }
  }

  /** `POST /api/upload`: a screenshot, video or trace, linked to its run and test result. */
  async upload(file: { path?: string; body?: Buffer; name: string; contentType: string },
    type: string, runId: string, testId: string): Promise<any> {
    const form = new FormData();
    const blob = file.path
      ? await fileBlob(file.path, file.contentType)
      : new Blob([file.body ?? Buffer.alloc(0)], { type: file.contentType });
    form.append("file", blob, file.path ? basename(file.path) : file.name);
    const query = new URLSearchParams({ type, runId, testId });
    let response: Response;
    try {
      // an upload takes longer than a JSON answer: up to 10 timeouts (a 100 MiB video)
      response = await fetch(`${this.base}/api/upload?${query}`, { method: "POST",
        headers: this.headers(), body: form,
        signal: AbortSignal.timeout(this.options.timeoutSeconds * 10_000) });
    } catch (err) {
      throw networkError(err, this.base);
    }
    return answer(response);
  }
}

async function fileBlob(path: string, type: string): Promise<Blob> {
  if (typeof openAsBlob === "function") return openAsBlob(path, { type });
  return new Blob([await readFile(path)], { type });
}

async function answer(response: Response): Promise<any> {
  const text = await response.text();
  let body: any = undefined;
  try { body = text ? JSON.parse(text) : undefined; } catch { /* not JSON: shown as text */ }
  if (response.ok) return body;
  const error = body && typeof body === "object" ? body.error : undefined;
  const code = error?.code ?? `HTTP_${response.status}`;
  const message = error?.message ?? (text.slice(0, 200) || response.statusText);
  throw new RedlineError(String(code), String(message), response.status);
}

function networkError(err: unknown, base: string): RedlineError {
  const cause = (err as any)?.cause;
  const why = cause?.code || cause?.message || (err as any)?.name || String(err);
  if ((err as any)?.name === "TimeoutError") {
    return new RedlineError("TIMEOUT", `${base} did not answer in time`);
  }
  return new RedlineError("NETWORK_ERROR", `cannot reach ${base} (${why})`);
}

function retryAfter(response: Response): number {
  const seconds = Number(response.headers.get("retry-after"));
  return Number.isFinite(seconds) && seconds > 0 ? Math.min(seconds, 5) * 1000 : 500;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
