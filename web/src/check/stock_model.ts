// Check page: loads a project's model with STOCK TF.js (tfjs-layers loadLayersModel on the
// stock cpu backend, none of MLitB's kernels) and, in a Web Worker, with the trainer's own
// compute path, so tests can compare both predictions on the same images.

import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { loadLayersModel } from "@tensorflow/tfjs-layers";

async function fetchTest(project: number, count: number) {
  const res = await fetch(`/api/projects/${project}/data/test?start=0&count=${count}`);
  const buf = new Uint8Array(await res.arrayBuffer());
  return { labels: buf.subarray(0, count), images: buf.subarray(count) };
}

async function stockPredict(project: number, count: number): Promise<number[]> {
  await tf.setBackend("cpu");
  const model = await loadLayersModel(`/api/projects/${project}/model/model.json`);
  const [, h, w, c] = model.inputs[0].shape as number[];
  const { images } = await fetchTest(project, count);
  const x = tf.tidy(() => tf.tensor4d(Float32Array.from(images, (v) => v / 255), [count, h, w, c]));
  const y = model.predict(x) as tf.Tensor;
  const out = Array.from(await y.data());
  tf.dispose([x, y]);
  return out;
}

function trainerPredict(project: number, count: number, backend: string): Promise<{ backend: string; probs: number[] }> {
  const worker = new Worker("/static/check_trainer_predict.js", { type: "module" });
  return new Promise((resolve, reject) => {
    worker.onmessage = (ev) => (ev.data.error ? reject(new Error(ev.data.error)) : resolve(ev.data));
    worker.onerror = (ev) => reject(new Error(ev.message));
    worker.postMessage({ project, count, backend });
  });
}

(window as any).modelCheck = { stockPredict, trainerPredict };
