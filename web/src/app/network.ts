// Network rules of the editor: mirrors mlitb/model/spec.py (allow-list, output shapes, parameter counts)
// so the page shows each layer's shape and weights as you edit and refuses invalid networks before sending.

export const LAYER_TYPES = ["input", "conv2d", "maxpool2d", "dense", "flatten", "dropout", "relu", "tanh", "sigmoid", "softmax"] as const;
export const ACTIVATIONS = ["linear", "relu", "tanh", "sigmoid", "softmax"] as const;
export type LayerType = (typeof LAYER_TYPES)[number];
export type LayerSpec = { type: string; [key: string]: unknown };

export const MAX_LAYERS = 64;
const MAX_DIM = 4096;
const MAX_PARAMS = 50_000_000;

/** Allowed keys per layer type and their defaults (undefined = required; maxpool2d stride defaults to size). */
export const KEYS: Record<LayerType, Record<string, unknown>> = {
  input: { shape: undefined },
  conv2d: { filters: undefined, kernel: undefined, stride: 1, padding: "same", activation: "linear" },
  maxpool2d: { size: 2, stride: null },
  dense: { units: undefined, activation: "linear" },
  flatten: {}, dropout: { rate: 0.5 }, relu: {}, tanh: {}, sigmoid: {}, softmax: {},
};

export interface LayerInfo { outputShape: number[] | null; params: number; error: string | null }
export interface NetworkCheck { layers: LayerInfo[]; paramCount: number; error: string | null }

const isInt = (v: unknown, lo: number, hi: number) => typeof v === "number" && Number.isInteger(v) && v >= lo && v <= hi;

/** Checks a layer list the way the server does; every layer gets its output shape and parameter count
 * until the first invalid one, which carries the error (also the network's error). */
export function checkNetwork(spec: LayerSpec[]): NetworkCheck {
  const layers: LayerInfo[] = spec.map(() => ({ outputShape: null, params: 0, error: null }));
  const fail = (i: number, msg: string): NetworkCheck => {
    const text = `layer ${i} (${spec[i]?.type ?? "?"}): ${msg}`;
    if (layers[i]) layers[i].error = msg;
    return { layers, paramCount: 0, error: text };
  };
  if (!spec.length) return { layers, paramCount: 0, error: "network must be a non-empty list of layers" };
  if (spec.length > MAX_LAYERS) return { layers, paramCount: 0, error: `network has ${spec.length} layers; at most ${MAX_LAYERS}` };
  for (let i = 0; i < spec.length; i++) {
    if (!(LAYER_TYPES as readonly string[]).includes(spec[i].type)) return fail(i, `unknown layer type '${spec[i].type}'`);
  }
  if (spec[0].type !== "input") return fail(0, "the first layer must be 'input'");
  const shape = spec[0].shape;
  if (!Array.isArray(shape) || ![1, 3].includes(shape.length) || !shape.every((d) => isInt(d, 1, MAX_DIM)))
    return fail(0, "'shape' must be [features] or [height, width, channels] of positive integers");
  let cur = [...(shape as number[])];
  layers[0].outputShape = cur;
  let total = 0;
  let last: LayerSpec | null = null;
  for (let i = 1; i < spec.length; i++) {
    const raw = spec[i];
    const kind = raw.type as LayerType;
    if (kind === "input") return fail(i, "only the first layer may be 'input'");
    const allowed = KEYS[kind];
    const extra = Object.keys(raw).filter((k) => k !== "type" && !(k in allowed));
    if (extra.length) return fail(i, `unknown key(s) ${extra.sort().join(", ")}`);
    const p: Record<string, unknown> = {};
    for (const [k, d] of Object.entries(allowed)) {
      if (raw[k] !== undefined && raw[k] !== null) p[k] = raw[k];
      else if (d === undefined) return fail(i, `missing required key '${k}'`);
      else p[k] = d;
    }
    let params = 0;
    if (kind === "conv2d") {
      if (cur.length !== 3) return fail(i, `needs a [h, w, c] input, got [${cur}]`);
      const [f, k, s] = [p.filters, p.kernel, p.stride] as number[];
      if (!isInt(f, 1, MAX_DIM)) return fail(i, `'filters' must be an integer in [1, ${MAX_DIM}], got ${f}`);
      if (!isInt(k, 1, 64)) return fail(i, `'kernel' must be an integer in [1, 64], got ${k}`);
      if (!isInt(s, 1, 64)) return fail(i, `'stride' must be an integer in [1, 64], got ${s}`);
      if (p.padding !== "same" && p.padding !== "valid") return fail(i, `'padding' must be 'same' or 'valid'`);
      const [h, w, c] = cur;
      const [oh, ow] = p.padding === "same" ? [Math.ceil(h / s), Math.ceil(w / s)] : [Math.floor((h - k) / s) + 1, Math.floor((w - k) / s) + 1];
      if (oh < 1 || ow < 1) return fail(i, `kernel ${k} does not fit the ${h}x${w} input`);
      params = k * k * c * f + f;
      cur = [oh, ow, f];
    } else if (kind === "maxpool2d") {
      if (cur.length !== 3) return fail(i, `needs a [h, w, c] input, got [${cur}]`);
      const size = p.size as number;
      if (!isInt(size, 1, 64)) return fail(i, `'size' must be an integer in [1, 64], got ${size}`);
      const s = (p.stride ?? size) as number;
      if (!isInt(s, 1, 64)) return fail(i, `'stride' must be an integer in [1, 64], got ${s}`);
      const [h, w, c] = cur;
      const [oh, ow] = [Math.floor((h - size) / s) + 1, Math.floor((w - size) / s) + 1];
      if (oh < 1 || ow < 1) return fail(i, `pool size ${size} does not fit the ${h}x${w} input`);
      cur = [oh, ow, c];
    } else if (kind === "dense") {
      if (cur.length !== 1) return fail(i, `needs a flat input (add a 'flatten' layer), got [${cur}]`);
      const units = p.units as number;
      if (!isInt(units, 1, 1_000_000)) return fail(i, `'units' must be an integer in [1, 1000000], got ${units}`);
      params = cur[0] * units + units;
      cur = [units];
    } else if (kind === "flatten") {
      cur = [cur.reduce((a, b) => a * b, 1)];
    } else if (kind === "dropout") {
      const r = p.rate as number;
      if (typeof r !== "number" || !(r >= 0 && r < 1)) return fail(i, `'rate' must be a number in [0, 1), got ${r}`);
    }
    if ("activation" in p && !(ACTIVATIONS as readonly string[]).includes(p.activation as string))
      return fail(i, `unknown activation '${p.activation}'`);
    layers[i] = { outputShape: cur, params, error: null };
    total += params;
    last = { ...p, type: kind };
  }
  const endsSoftmax = last !== null && (last.type === "softmax" || (last.type === "dense" && last.activation === "softmax"));
  if (!endsSoftmax || cur.length !== 1)
    return { layers, paramCount: total, error: "the network must end in a softmax classifier (dense with activation 'softmax', or a 'softmax' layer)" };
  if (total > MAX_PARAMS) return { layers, paramCount: total, error: `network has ${total} parameters; at most ${MAX_PARAMS}` };
  if (total === 0) return { layers, paramCount: total, error: "network has no trainable parameters" };
  return { layers, paramCount: total, error: null };
}

/** A new layer of a type with the editor's starting values. */
export function newLayer(type: LayerType): LayerSpec {
  switch (type) {
    case "input": return { type, shape: [28, 28, 1] };
    case "conv2d": return { type, filters: 8, kernel: 3, stride: 1, padding: "same", activation: "relu" };
    case "maxpool2d": return { type, size: 2 };
    case "dense": return { type, units: 10, activation: "softmax" };
    case "dropout": return { type, rate: 0.5 };
    default: return { type };
  }
}

export const PAPER_NETWORK: LayerSpec[] = [
  { type: "input", shape: [28, 28, 1] },
  { type: "conv2d", filters: 16, kernel: 5, stride: 1, padding: "same", activation: "relu" },
  { type: "maxpool2d", size: 2 },
  { type: "flatten" },
  { type: "dense", units: 10, activation: "softmax" },
];

/** The layer list of a TF.js Layers model.json (a Sequential model as this server exports it); throws
 * on anything the allow-list cannot express. */
export function fromModelJson(doc: any): LayerSpec[] {
  const topo = doc?.modelTopology;
  const list: any[] | undefined = topo?.config?.layers ?? (Array.isArray(topo?.config) ? topo.config : undefined);
  if (topo?.class_name !== "Sequential" || !Array.isArray(list) || !list.length) throw new Error("not a TF.js Sequential model.json");
  const first = list[0].config?.batch_input_shape;
  if (!Array.isArray(first)) throw new Error("the first layer has no batch_input_shape");
  const out: LayerSpec[] = [{ type: "input", shape: first.slice(1) }];
  const pair = (v: any, what: string) => {
    if (Array.isArray(v) && v[0] !== v[1]) throw new Error(`only square ${what} are supported, got [${v}]`);
    return Array.isArray(v) ? v[0] : v;
  };
  for (const { class_name: kind, config: c } of list) {
    if (kind === "Conv2D")
      out.push({ type: "conv2d", filters: c.filters, kernel: pair(c.kernel_size, "kernels"), stride: pair(c.strides, "strides"),
                 padding: c.padding, activation: c.activation });
    else if (kind === "MaxPooling2D") out.push({ type: "maxpool2d", size: pair(c.pool_size, "pools"), stride: pair(c.strides, "strides") });
    else if (kind === "Dense") out.push({ type: "dense", units: c.units, activation: c.activation });
    else if (kind === "Flatten") out.push({ type: "flatten" });
    else if (kind === "Dropout") out.push({ type: "dropout", rate: c.rate });
    else if (kind === "Activation") out.push({ type: c.activation });
    else throw new Error(`layer class ${kind} is not allowed`);
  }
  return out;
}
