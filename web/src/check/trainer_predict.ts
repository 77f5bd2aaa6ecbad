// Worker for the model check page: predicts with the trainer's compute path (GradientComputer
// on the chosen backend, MLitB's kernels registered) from the same served artifacts.

import { chooseBackend } from "../compute/backend";
import { GradientComputer } from "../compute/gradients";

self.onmessage = async (ev: MessageEvent) => {
  const { project, count, backend } = ev.data as { project: number; count: number; backend: string };
  try {
    const chosen = await chooseBackend(backend === "auto" ? undefined : backend);
    const url = new URL(`/api/projects/${project}/model/model.json`, location.origin).toString();
    const topology = await (await fetch(url)).json();
    const shape = topology.modelTopology.config.layers[0].config.batch_input_shape.slice(1) as [number, number, number];
    const computer = await GradientComputer.fromArtifacts(url);
    const res = await fetch(`/api/projects/${project}/data/test?start=0&count=${count}`);
    const buf = new Uint8Array(await res.arrayBuffer());
    const probs = computer.predict(buf.subarray(count), count, shape);
    (self as unknown as Worker).postMessage({ backend: chosen.name, probs: Array.from(probs) });
  } catch (e) {
    (self as unknown as Worker).postMessage({ error: String(e) });
  }
};
