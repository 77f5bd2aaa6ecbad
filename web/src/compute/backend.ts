// Picks the TF.js backend that trains fastest here (page or Web Worker): webgpu > webgl > wasm > cpu; software GPUs lose to wasm.
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import "@tensorflow/tfjs-backend-webgl";
import "@tensorflow/tfjs-backend-webgpu";
import { getThreadsCount, setThreadsCount, setWasmPaths } from "@tensorflow/tfjs-backend-wasm";
import { loadOwnKernels } from "./kernels";
import type { OwnBuild } from "./kernels/own_wasm";

export interface BackendChoice {
  name: string; // the active TF.js backend
  software: boolean; // true when the chosen backend only emulates a device (never chosen over wasm)
  detail: string; // why: what each candidate reported, in order
}

export interface BackendOptions {
  wasmPath?: string; // where the .wasm binaries are served
  wasmThreads?: number; // 0 = single-threaded build; n > 0 = threaded build with n threads when allowed
  ownBuilds?: OwnBuild[]; // our own wasm kernels' builds to try, best first (default: relaxed SIMD, then SIMD)
}

export const WASM_PATH = "/static/wasm/";
export const ORDER = ["webgpu", "webgl", "wasm", "cpu"] as const;
const SOFTWARE = /swiftshader|llvmpipe|lavapipe|softpipe|software|basic render|mesa offscreen/i;

interface Probe { ok: boolean; software: boolean; detail: string }

async function probeWebGPU(): Promise<Probe> {
  const gpu = (globalThis.navigator as Navigator & { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
  if (!gpu) return { ok: false, software: false, detail: "no navigator.gpu" };
  type Info = { vendor?: string; architecture?: string; device?: string; description?: string; isFallbackAdapter?: boolean };
  const adapter = (await gpu.requestAdapter().catch(() => null)) as
    | { info?: Info; isFallbackAdapter?: boolean; requestAdapterInfo?: () => Promise<Info> }
    | null;
  if (!adapter) return { ok: false, software: false, detail: "no adapter" };
  const info: Info = adapter.info ?? (adapter.requestAdapterInfo ? await adapter.requestAdapterInfo() : {});
  const name = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(" ");
  const software = Boolean(adapter.isFallbackAdapter || info.isFallbackAdapter) || SOFTWARE.test(name);
  return { ok: true, software, detail: `adapter '${name || "unknown"}'${software ? " is a software/fallback adapter" : ""}` };
}

function probeWebGL(): Probe {
  let canvas: OffscreenCanvas | HTMLCanvasElement;
  if (typeof OffscreenCanvas !== "undefined") canvas = new OffscreenCanvas(1, 1);
  else if (typeof document !== "undefined") canvas = document.createElement("canvas");
  else return { ok: false, software: false, detail: "no canvas" };
  const gl = (canvas.getContext("webgl2") ?? canvas.getContext("webgl")) as WebGLRenderingContext | null;
  if (!gl) return { ok: false, software: false, detail: "no context" };
  const ext = gl.getExtension("WEBGL_debug_renderer_info");
  const renderer = String(gl.getParameter(ext ? ext.UNMASKED_RENDERER_WEBGL : gl.RENDERER));
  const vendor = String(gl.getParameter(ext ? ext.UNMASKED_VENDOR_WEBGL : gl.VENDOR));
  gl.getExtension("WEBGL_lose_context")?.loseContext();
  const software = SOFTWARE.test(`${vendor} ${renderer}`);
  return { ok: true, software, detail: `renderer '${renderer}'${software ? " is software (SwiftShader-like)" : ""}` };
}

// Threads need SharedArrayBuffer (cross-origin isolation) and nested workers. TF.js 4.22 caps XNNPACK's
// pool at hardwareConcurrency / 2, so below 4 logical cores the threaded build only adds 8 idle workers:
// by default it is used from 4 cores up (bench/trainer_throughput.py --threads measures either way). The
// backend detail says how many pthread workers really run (measured on 2 cores: none, even when 2 threads
// are asked for).
function wasmThreads(opts: BackendOptions): number {
  const isolated = (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true;
  if (!isolated || typeof SharedArrayBuffer === "undefined") return 0;
  if (opts.wasmThreads !== undefined) return opts.wasmThreads;
  const cores = globalThis.navigator?.hardwareConcurrency ?? 1;
  return cores >= 4 ? Math.floor(cores / 2) : 0;
}

// The threaded build's pool really runs: XNNPACK's threads are Emscripten pthreads, each a nested Web Worker.
function runningPthreads(): number {
  const wasm = (tf.backend() as unknown as { wasm?: { PThread?: { runningWorkers?: unknown[] } } }).wasm;
  return wasm?.PThread?.runningWorkers?.length ?? 0;
}

function configureWasm(opts: BackendOptions, threads: number): void {
  tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", threads > 0);
  if (threads > 0) setThreadsCount(threads);
  try {
    setWasmPaths(opts.wasmPath ?? WASM_PATH);
  } catch {
    // a failed earlier initialisation in this context already fixed the paths
  }
}

// A tiny training step with every op the trainer uses: a backend that cannot run it is skipped. Its numbers
// are checked too: measured here, Chromium's fallback WebGPU adapter (SwiftShader) runs every kernel and
// returns zeros, which would train nothing while looking fast.
function smokeTrain(): void {
  tf.tidy(() => {
    const product = tf.matMul(tf.tensor2d([[1, 2], [3, 4]]), tf.tensor2d([[5], [6]])).dataSync();
    if (product[0] !== 17 || product[1] !== 39) throw new Error(`wrong results ([1,2;3,4]x[5;6] gave [${product}])`);
    // weights mostly positive on a positive input: with N(0, 1) weights both filters' ReLU outputs were all zero
    // (so every gradient was, and a sound backend was refused) in 0.3% of smoke steps (simulated, 20,000 draws)
    const w = tf.variable(tf.randomUniform([3, 3, 1, 2], -0.5, 1), true, `smoke${Math.random()}`);
    const d = tf.variable(tf.randomNormal([32, 3]), true, `smoke${Math.random()}`);
    const x = tf.randomUniform([2, 8, 8, 1], 0.1, 1);
    const { grads } = tf.variableGrads(() => {
      const h = tf.maxPool(tf.relu(tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, "same")), 2, 2, "valid");
      const p = tf.softmax(tf.matMul(tf.reshape(h, [2, 32]) as tf.Tensor2D, d as tf.Tensor2D));
      return tf.sum(tf.log(tf.clipByValue(p, 1e-7, 1))) as tf.Scalar;
    }, [w, d]);
    for (const g of Object.values(grads)) {
      const v = g.dataSync();
      if (!v.every(Number.isFinite) || v.every((e) => e === 0)) throw new Error("wrong results (a zero or non-finite gradient)");
    }
    w.dispose();
    d.dispose();
  });
}

async function activate(name: string): Promise<string | null> {
  try {
    if (!(await tf.setBackend(name))) return "failed to initialise";
    await tf.ready();
    smokeTrain();
    return null;
  } catch (e) {
    return `cannot train: ${(e as Error).message ?? e}`;
  }
}

/**
 * Chooses and activates a backend. `force` names one backend to use (tests, benchmarks); it throws
 * when that backend cannot train here.
 */
export async function chooseBackend(force?: string, opts: BackendOptions = {}): Promise<BackendChoice> {
  const notes: string[] = [];
  for (const name of force ? [force] : ORDER) {
    let software = false;
    let extra = "";
    if (name === "webgpu" || name === "webgl") {
      const p = name === "webgpu" ? await probeWebGPU() : probeWebGL();
      software = p.software;
      if (!p.ok || (software && !force)) {
        notes.push(`${name}: ${p.detail}${p.ok ? ", loses to wasm" : ""}`);
        continue;
      }
      extra = p.detail;
    }
    let failure: string | null;
    if (name === "wasm") {
      const threads = wasmThreads(opts);
      configureWasm(opts, threads);
      failure = await activate(name);
      if (failure && threads > 0) {
        notes.push(`wasm threaded build: ${failure}`);
        configureWasm(opts, 0); // fall back to the single-threaded SIMD build
        failure = await activate(name);
      }
      if (!failure) {
        const simd = await tf.env().getAsync("WASM_HAS_SIMD_SUPPORT");
        const threaded = tf.env().getBool("WASM_HAS_MULTITHREAD_SUPPORT");
        const isolated = (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true;
        extra = `${threaded ? "threaded " : ""}${simd ? "SIMD" : "plain"} build, ${getThreadsCount()} thread(s)`
          + `${threaded ? ` (${runningPthreads()} pthread worker(s) running)` : ""}, ${isolated ? "" : "not "}cross-origin isolated`
          + `, ${await loadOwnKernels(opts.wasmPath ?? WASM_PATH, opts.ownBuilds)}`;
      }
    } else {
      failure = await activate(name);
    }
    if (failure) {
      notes.push(`${name}: ${failure}`);
      if (force) throw new Error(`backend ${name} unusable: ${notes.join("; ")}`);
      continue;
    }
    notes.push(`${name}: chosen${extra ? ` (${extra})` : ""}`);
    return { name, software, detail: notes.join("; ") };
  }
  throw new Error(`no TF.js backend can train here: ${notes.join("; ")}`);
}
