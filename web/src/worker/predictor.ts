// Predictor Web Worker: loads a project's latest model.json + weights into a GradientComputer and
// classifies one image (an ImageBitmap from a file or the camera), resized and greyscaled to the
// model's input shape on an OffscreenCanvas. The page's main thread never runs a model.

import { chooseBackend } from "../compute/backend";
import { GradientComputer } from "../compute/gradients";
import { authHeaders, modelSource } from "./connection";

export interface PredictRequest { kind: "predict"; project: number; token?: string; image: ImageBitmap; invert: boolean; backend?: string }
export interface PredictReply { kind: "prediction"; top: { label: number; name: string; p: number }[]; ms: number }

let ready: Promise<unknown> | null = null;

// The project's class names (index -> label), which grow when a class is learnt on the fly.
async function labelNames(project: number, token?: string): Promise<string[] | null> {
  const res = await fetch(`/api/projects/${project}`, { headers: authHeaders(token) });
  return res.ok ? ((await res.json()).labels ?? null) : null;
}

function pixels(image: ImageBitmap, [h, w, c]: number[], invert: boolean): Uint8Array {
  const canvas = new OffscreenCanvas(w, h);
  const ctx = canvas.getContext("2d", { willReadFrequently: true })!;
  ctx.drawImage(image, 0, 0, w, h);
  const rgba = ctx.getImageData(0, 0, w, h).data;
  const out = new Uint8Array(h * w * c);
  for (let i = 0; i < h * w; i++) {
    for (let k = 0; k < c; k++) {
      const v = c === 1 ? Math.round(0.299 * rgba[4 * i] + 0.587 * rgba[4 * i + 1] + 0.114 * rgba[4 * i + 2]) : rgba[4 * i + Math.min(k, 2)];
      out[i * c + k] = invert ? 255 - v : v;
    }
  }
  return out;
}

self.onmessage = async (ev: MessageEvent<PredictRequest>) => {
  const req = ev.data;
  try {
    ready ??= chooseBackend(req.backend && req.backend !== "auto" ? req.backend : undefined);
    await ready;
    const t0 = performance.now();
    const url = `/api/projects/${req.project}/model/model.json`;
    const computer = await GradientComputer.fromArtifacts(modelSource(url, req.token)); // the newest parameters
    const shape = computer.model.inputs[0].shape.slice(1) as number[];
    if (shape.length !== 3) throw new Error(`prediction needs an image input, the model takes [${shape}]`);
    const probs = computer.predict(pixels(req.image, shape, req.invert), 1, shape as [number, number, number]);
    computer.model.dispose();
    const names = await labelNames(req.project, req.token);
    const top = Array.from(probs, (p, label) => ({ label, name: names?.[label] ?? `class ${label}`, p }))
      .sort((a, b) => b.p - a.p).slice(0, 5);
    (self as unknown as Worker).postMessage({ kind: "prediction", top, ms: Math.round(performance.now() - t0) } satisfies PredictReply);
  } catch (e) {
    (self as unknown as Worker).postMessage({ kind: "error", message: (e as Error).message ?? String(e) });
  } finally {
    req.image.close();
  }
};
