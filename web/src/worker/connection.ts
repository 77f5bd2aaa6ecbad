// One worker's WebSocket session with the master: JOIN, then typed frames in, binary frames out.

import * as tf from "@tensorflow/tfjs-core";
import { cached } from "./cache";
import { GatewayChooser } from "./gateways";
import { solve } from "./pow";
import { decode, encode, Frame, json, MessageType, ServerError, Welcome } from "../protocol/frames";

export interface WorkerOptions {
  server: string; // http(s) origin of the master, e.g. location.origin
  project: number;
  backend: string; // "auto" or a forced TF.js backend name
  token?: string; // invite (or owner) token of a private project
  volunteer?: string; // this volunteer's secret key (kept in the page's storage): credit goes to its public id
}

// Headers that carry the project token on HTTP requests, if there is one.
export const authHeaders = (token?: string): Record<string, string> => (token ? { Authorization: `Bearer ${token}` } : {});

// Status a worker posts to the page after every change; the page shows it and headless
// drivers (mlitb worker, mlitb demo) read it.
export interface WorkerStatus {
  role: "trainer" | "tracker";
  state: string; // connecting | loading | downloading | training | evaluating | idle | closed | error
  backend?: string;
  backendDetail?: string;
  clientId?: number;
  volunteer?: string | null; // public id the master credits (from WELCOME)
  round?: number;
  samples?: number;
  samplesPerS?: number;
  workMs?: number;
  computeMs?: number;
  loss?: number;
  testError?: number;
  allocated?: number;
  downloaded?: number;
  fromCache?: number; // examples of `downloaded` that came from the IndexedDB cache
  kept?: number; // examples kept from the previous allocation (not downloaded again)
  codecMs?: number; // ms the upload codec took this round (top-k selection, quantisation, error feedback)
  bytesUp?: number; // bytes of this round's GRADIENT frame
  error?: string;
}

export function wsUrl(server: string): string {
  const u = new URL("/ws", server);
  u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
  return u.toString();
}

// Close codes after which reconnecting is pointless.
const FINAL_CLOSE_CODES = new Set([1000, 1008, 4404]);
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 30_000;
const POW_RETRIES = 5;

export class Connection {
  private ws!: WebSocket;
  private leaving = false;
  private attempts = 0;
  private powRefused = false; // the last JOIN was refused for its proof of work
  private gateways: GatewayChooser; // where the WebSocket goes: the server, or a cluster's least loaded gateway
  welcome?: Welcome;
  newestRound = -1; // highest round number seen on the wire, even if not yet handled
  arrivedAt = new WeakMap<Frame, number>(); // performance.now() when each frame arrived

  constructor(
    private opts: WorkerOptions,
    private role: "trainer" | "tracker",
    private backend: string,
    private onFrame: (f: Frame) => void | Promise<void>,
    private onError: (e: ServerError) => void,
    private onClose: (reason: string, retryInMs: number | null) => void,
  ) {
    this.gateways = new GatewayChooser(opts.server);
    this.connect();
  }

  // A trainer first asks for a proof-of-work challenge: one more trainer from an address that already runs some
  // must show work (mlitb/trust/pow.py), computed here in the Worker; `bits` 0 means none is needed.
  private async proofOfWork(): Promise<string | undefined> {
    if (this.role !== "trainer") return undefined;
    const res = await fetch(new URL(`/api/projects/${this.opts.project}/challenge`, this.opts.server),
      { headers: authHeaders(this.opts.token) });
    if (!res.ok) return undefined; // JOIN then says why (an unknown project, a private one without its token)
    const { challenge, bits } = await res.json();
    return bits > 0 ? solve(challenge, bits) : undefined;
  }

  private connect(): void {
    // a proof of work refused is retried at the page's own gateway: a challenge is valid only at the gateway that
    // made it, and only that one is in reach of this isolated page's HTTP (gateways.ts)
    const target = this.powRefused ? Promise.resolve(this.gateways.goHome())
      : this.gateways.choose().catch(() => this.gateways.current);
    this.powRefused = false;
    target.then(async (gateway) => {
      const pow = gateway === this.gateways.home ? await this.proofOfWork().catch(() => undefined) : undefined;
      this.open(gateway, pow);
    });
  }

  private open(gateway: string, pow: string | undefined): void {
    this.ws = new WebSocket(wsUrl(gateway));
    this.ws.binaryType = "arraybuffer";
    this.ws.onopen = () =>
      this.ws.send(encode(MessageType.JOIN, { project: this.opts.project,
        payload: { role: this.role, backend: this.backend, agent: navigator.userAgent.slice(0, 200),
          ...(this.opts.token ? { token: this.opts.token } : {}),
          ...(pow ? { pow } : {}),
          ...(this.opts.volunteer ? { volunteer: this.opts.volunteer } : {}) } }));
    // frames are handled strictly in order, even when a handler awaits
    let chain = Promise.resolve();
    this.ws.onmessage = (ev) => {
      const frame = decode(ev.data as ArrayBuffer);
      this.arrivedAt.set(frame, performance.now());
      if (frame.type === MessageType.WORK) this.newestRound = Math.max(this.newestRound, frame.round);
      chain = chain.then(() => this.dispatch(frame)).catch((e) => this.onError({ code: "CLIENT", number: 0, message: String(e) }));
    };
    this.ws.onclose = (ev) => {
      const reason = ev.reason || `closed (${ev.code})`;
      // a proof of work refused (trainers of one address joining at once race for the cheap place) is retried
      // with a new challenge; other policy closes are final
      const final = FINAL_CLOSE_CODES.has(ev.code) && !(this.powRefused && this.attempts < POW_RETRIES);
      if (this.leaving || final) return this.onClose(reason, null);
      // exponential backoff with full jitter, so a restarted master is not stormed
      const delay = Math.random() * Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** this.attempts++);
      this.onClose(reason, delay);
      setTimeout(() => this.connect(), delay);
    };
  }

  private async dispatch(frame: Frame): Promise<void> {
    if (frame.type === MessageType.WELCOME) {
      this.welcome = json<Welcome>(frame);
      this.attempts = 0;
      this.newestRound = -1;
    }
    if (frame.type === MessageType.ERROR) {
      const err = json<ServerError>(frame);
      if (err.code === "POW_REQUIRED" || err.code === "POW_INVALID") this.powRefused = true;
      return this.onError(err);
    }
    await this.onFrame(frame);
  }

  send(type: MessageType, fields: Parameters<typeof encode>[1]): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(encode(type, { project: this.opts.project, ...fields }));
  }

  close(): void {
    this.leaving = true;
    this.send(MessageType.LEAVE, {});
    this.ws.close(1000, "left");
  }
}

// Examples [start, start+count) of a split as {labels, images}, from the IndexedDB cache when
// this version of the data was downloaded before; the server caps a request at 10,000.
export async function fetchRange(url: string, start: number, count: number, pixels: number, token?: string,
                                 version?: string) {
  const get = async () => {
    const res = await fetch(`${url}?start=${start}&count=${count}`, { headers: authHeaders(token) });
    if (!res.ok) throw new Error(`data request failed: ${res.status} ${await res.text()}`);
    return new Uint8Array(await res.arrayBuffer());
  };
  const { bytes: buf, hit } = version ? await cached(`${version}|${url.split("/").pop()}|${start}|${count}`, get) : { bytes: await get(), hit: false };
  if (buf.byteLength !== count * (1 + pixels)) throw new Error(`data response has ${buf.byteLength} bytes, expected ${count * (1 + pixels)}`);
  return { labels: buf.subarray(0, count), images: buf.subarray(count), cached: hit };
}

// Sorted ids -> maximal runs [start, count], each at most `max` long.
export function idRuns(ids: Uint32Array, max = 10000): Array<[number, number]> {
  const runs: Array<[number, number]> = [];
  let i = 0;
  while (i < ids.length) {
    let j = i + 1;
    while (j < ids.length && ids[j] === ids[j - 1] + 1 && j - i < max) j++;
    runs.push([ids[i], j - i]);
    i = j;
  }
  return runs;
}

// Where a worker loads the model from: a URL, or an HTTP handler that sends the token.
export function modelSource(modelUrl: string, token?: string): string | tf.io.IOHandler {
  const url = new URL(modelUrl, location.origin).toString();
  return token ? tf.io.http(url, { requestInit: { headers: authHeaders(token) } }) : url;
}
