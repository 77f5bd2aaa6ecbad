// What every worker does the same way: report status to the page, choose a backend,
// hold the connection (reconnecting by itself), and start/stop on the page's word.

import { chooseBackend } from "../compute/backend";
import type { Frame } from "../protocol/frames";
import { Connection, WorkerOptions, WorkerStatus } from "./connection";

export class WorkerSession {
  readonly status: WorkerStatus;
  conn!: Connection;
  options!: WorkerOptions;

  constructor(role: "trainer" | "tracker", onFrame: (f: Frame) => void | Promise<void>) {
    this.status = { role, state: "connecting" };
    self.onmessage = (ev: MessageEvent) => {
      if (ev.data?.kind === "start") this.start(ev.data.options, onFrame).catch((e) => this.post({ state: "error", error: String(e) }));
      if (ev.data?.kind === "stop") this.conn?.close();
    };
  }

  post(patch: Partial<WorkerStatus>): void {
    Object.assign(this.status, patch);
    (self as unknown as Worker).postMessage({ kind: "status", status: { ...this.status } });
  }

  private async start(opts: WorkerOptions, onFrame: (f: Frame) => void | Promise<void>): Promise<void> {
    this.options = opts;
    const backend = await chooseBackend(opts.backend === "auto" ? undefined : opts.backend);
    this.post({ backend: backend.name, backendDetail: backend.detail });
    this.conn = new Connection(opts, this.status.role, backend.name, onFrame,
      (e) => this.post({ error: `${e.code}: ${e.message}` }),
      (reason, retryInMs) => this.post(retryInMs == null
        ? { state: "closed", error: this.status.error ?? reason }
        : { state: `reconnecting in ${(retryInMs / 1000).toFixed(1)} s`, error: reason }));
  }
}
