// Closure check page: the research-closure tools (`mlitb closure verify|replay`) load this bundle from a
// closure file and run it in headless Chromium: it recomputes a stored model's test error and the summed
// gradients of recorded rounds with the same compute code (web/src/compute) the trainer and tracker run.

import { chooseBackend } from "../compute/backend";
import { GradientComputer } from "../compute/gradients";

let computer: GradientComputer | undefined;
let backendName = "";

function bytes(b64: string): Uint8Array {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

function base64(buf: Uint8Array): string {
  let s = "";
  for (let i = 0; i < buf.length; i += 0x8000) s += String.fromCharCode(...buf.subarray(i, i + 0x8000));
  return btoa(s);
}

async function init(modelUrl: string, backend: string): Promise<{ backend: string; paramCount: number }> {
  backendName = (await chooseBackend(backend === "auto" ? undefined : backend)).name;
  computer = await GradientComputer.fromArtifacts(new URL(modelUrl, location.href).toString());
  return { backend: backendName, paramCount: computer.paramCount };
}

/** Test error of the loaded weights on `count` examples served at dataUrl (labels, then uint8 images). */
async function evaluate(dataUrl: string, count: number, shape: [number, number, number]) {
  if (!computer) throw new Error("init first");
  const buf = new Uint8Array(await (await fetch(dataUrl)).arrayBuffer());
  const r = computer.evaluate({ labels: buf.subarray(0, count), images: buf.subarray(count), count, shape });
  return { ...r, backend: backendName };
}

/** One recorded round: parameters (base64 float32) and its examples -> the summed gradient (base64 float32). */
function gradient(params: string, labels: string, images: string, shape: [number, number, number], batchSize: number) {
  if (!computer) throw new Error("init first");
  const p = bytes(params);
  computer.setParams(new Float32Array(p.buffer, p.byteOffset, p.byteLength / 4));
  const lab = bytes(labels);
  const data = { labels: lab, images: bytes(images), count: lab.length, shape };
  const order = Uint32Array.from({ length: lab.length }, (_, i) => i);
  const r = computer.computeOn(data, order, batchSize);
  return { grad: base64(new Uint8Array(r.grad.buffer)), samples: r.samples, lossSum: r.lossSum };
}

(window as unknown as { closure: object }).closure = { init, evaluate, gradient };
