// Parity check for the native (PyTorch) worker: the browser trainer's own compute path on a case written by
// tests/e2e/test_torch_parity.py, so Python can compare the two engines on identical inputs.
//
// /parity/CASE/ holds a saved model (model.json + weights.bin, TF.js Layers artifacts as the server writes
// them) and data.bin (u32 count, then count labels, then count uint8 images). The result: the saved model's
// predictions, then the loss sum and summed gradient of one mini-batch over all the examples (computeOn, as a
// deterministic round), with the weights set through setParams from weights.bin (the wire's flat order).
import { chooseBackend } from "../compute/backend";
import { GradientComputer } from "../compute/gradients";

export async function parityCheck(p: Record<string, string>) {
  const backend = await chooseBackend(p.backend || "wasm");
  const base = `/parity/${encodeURIComponent(p.case ?? "")}`;
  const computer = await GradientComputer.fromArtifacts(`${base}/model.json`);
  const buf = new Uint8Array(await (await fetch(`${base}/data.bin`)).arrayBuffer());
  const count = new DataView(buf.buffer).getUint32(0, true);
  const shape = computer.model.inputs[0].shape.slice(1) as [number, number, number];
  const labels = buf.subarray(4, 4 + count);
  const images = buf.subarray(4 + count);
  const probs = computer.predict(images, count, shape);
  const weights = new Float32Array(await (await fetch(`${base}/weights.bin`)).arrayBuffer());
  computer.setParams(weights);
  const all = Uint32Array.from({ length: count }, (_, i) => i);
  const r = computer.computeOn({ images, labels, count, shape }, all, count);
  return { backend: backend.name, paramCount: computer.paramCount, probs: Array.from(probs), lossSum: r.lossSum,
    grad: Array.from(r.grad), samples: r.samples };
}
