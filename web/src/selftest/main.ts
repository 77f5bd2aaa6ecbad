// Self-test page script: runs the checks named by the query (?check=kernels|throughput|train|backend|artifacts) in a Web Worker.
//
// Results land on window.selftest (a Promise of the worker's JSON) and in the page's <pre id="out">.
// Other query parameters go to the worker: backend=wasm (force one), seconds=10, batch=32,64, threads=0.
declare global {
  interface Window { selftest: Promise<unknown> }
}

function runInWorker(params: Record<string, string>): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const worker = new Worker("/static/selftest_worker.js", { type: "module" });
    worker.onmessage = (ev: MessageEvent<{ ok: boolean; result?: unknown; error?: string }>) => {
      worker.terminate();
      if (ev.data.ok) resolve(ev.data.result);
      else reject(new Error(ev.data.error));
    };
    worker.onerror = (ev) => {
      worker.terminate();
      reject(new Error(`worker failed: ${ev.message}`));
    };
    worker.postMessage(params);
  });
}

const params: Record<string, string> = {};
new URLSearchParams(location.search).forEach((v, k) => (params[k] = v));
window.selftest = runInWorker(params);
const out = document.getElementById("out");
window.selftest.then(
  (r) => { if (out) out.textContent = JSON.stringify(r, null, 2); },
  (e) => { if (out) out.textContent = `error: ${(e as Error).message}`; },
);

export {};
