// The trainer's own wasm kernels (web/assembly, AssemblyScript built by web/build.mjs), loaded next to TF.js's.
//
// Two builds of the same source: relaxed SIMD (a fused multiply-add where the CPU has one) and plain SIMD.
// WebAssembly.validate of the relaxed build itself decides (Chromium >= 114 has relaxed SIMD); a browser with
// neither keeps the XNNPACK-composed kernels (kernels still work, only slower). The module has its own memory:
// operands are copied in from TF.js's heap and the result copied back, a few MB per call against 10-100 ms of
// arithmetic (importing TF.js's memory would need its Memory object, which the 4.22 backend does not expose).

export interface OwnKernels {
  filterGrad(x: number, dy: number, dw: number, n: number, h: number, w: number, ci: number, oh: number, ow: number,
    co: number, fh: number, fw: number, sh: number, sw: number, pt: number, pl: number, rows: number): void;
  conv2d(x: number, w: number, y: number, n: number, hp: number, wp: number, ci: number, oh: number, ow: number, co: number,
    fh: number, fw: number, sh: number, sw: number): void;
  winograd3x3(xp: number, w: number, y: number, u: number, v: number, m: number, n: number, hp: number, wp: number,
    ci: number, oh: number, ow: number, co: number, blk: number): void;
  winograd4x4(xp: number, w: number, y: number, u: number, v: number, m: number, n: number, hp: number, wp: number,
    ci: number, oh: number, ow: number, co: number, blk: number): void;
  winogradFilterGrad(xp: number, dy: number, dw: number, v: number, e: number, m: number, n: number, hp: number,
    wp: number, ci: number, oh: number, ow: number, co: number, blk: number): void;
  maxPoolGrad(x: number, y: number, dy: number, dx: number, n: number, oh: number, ow: number, fh: number, fw: number,
    c: number): void;
  memory: WebAssembly.Memory;
  build: "relaxed SIMD" | "SIMD";
}

let own: OwnKernels | null = null;
let enabled = true;

export const OWN_WASM_FILES = { relaxed: "mlitb_kernels_relaxed.wasm", simd: "mlitb_kernels_simd.wasm" } as const;

async function instantiate(bytes: ArrayBuffer, build: OwnKernels["build"]): Promise<OwnKernels> {
  const memory = new WebAssembly.Memory({ initial: 1 });
  const { instance } = await WebAssembly.instantiate(bytes, { env: { memory } });
  const e = instance.exports;
  return { filterGrad: e.filterGrad as OwnKernels["filterGrad"], conv2d: e.conv2d as OwnKernels["conv2d"],
    winograd3x3: e.winograd3x3 as OwnKernels["winograd3x3"], winograd4x4: e.winograd4x4 as OwnKernels["winograd4x4"],
    winogradFilterGrad: e.winogradFilterGrad as OwnKernels["winogradFilterGrad"],
    maxPoolGrad: e.maxPoolGrad as OwnKernels["maxPoolGrad"], memory, build };
}

export type OwnBuild = OwnKernels["build"];
const FILES: Record<OwnBuild, string> = { "relaxed SIMD": OWN_WASM_FILES.relaxed, SIMD: OWN_WASM_FILES.simd };

/**
 * Loads the first of `builds` this browser validates; returns what was loaded, or why nothing was. Idempotent
 * (the first load in a context stays). Tests pass ["SIMD"] to check the plain build on a browser that has both.
 */
export async function loadOwnKernels(path: string, builds: OwnBuild[] = ["relaxed SIMD", "SIMD"]): Promise<string> {
  if (own) return `own kernels: ${own.build}`;
  const notes: string[] = [];
  for (const build of builds) {
    const file = FILES[build];
    try {
      const res = await fetch(path + file);
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const bytes = await res.arrayBuffer();
      if (!WebAssembly.validate(bytes)) {
        notes.push(`${build}: not supported here`);
        continue;
      }
      own = await instantiate(bytes, build);
      return `own kernels: ${build}`;
    } catch (e) {
      notes.push(`${build}: ${(e as Error).message ?? e}`);
    }
  }
  return `own kernels unavailable (${notes.join("; ")})`;
}

/** The loaded kernels, or null (not loaded, or switched off by restoreStockKernels for stock comparisons). */
export function ownKernels(): OwnKernels | null {
  return enabled ? own : null;
}

export function setOwnKernelsEnabled(on: boolean): void {
  enabled = on;
}

/** The wasm backend's heap access (TF.js 4.22 BackendWasm methods the kernels use). */
export type WasmHeap = import("@tensorflow/tfjs-core").KernelBackend & {
  makeOutput(shape: number[], dtype: "float32"): import("@tensorflow/tfjs-core").TensorInfo;
  typedArrayFromHeap(t: import("@tensorflow/tfjs-core").TensorInfo): Float32Array;
};

/** A Float32Array over the module's memory with room for `floats` values (grows the memory when needed). */
export function ownHeap(k: OwnKernels, floats: number): Float32Array {
  const need = floats * 4 - k.memory.buffer.byteLength;
  if (need > 0) k.memory.grow(Math.ceil(need / 65536));
  return new Float32Array(k.memory.buffer, 0, floats);
}
