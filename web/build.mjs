// Builds the browser client into the Python package's static folder (mlitb/static).
import { build } from "esbuild";
import asc from "assemblyscript/asc";
import { cpSync, mkdirSync, rmSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "mlitb", "static");

// Each entry is one script the server serves: the page, its workers, and the
// in-browser check pages used by tests and benchmarks.
const entries = {
  app: "src/app/main.ts",
  predictor: "src/worker/predictor.ts",
  trainer: "src/worker/trainer.ts",
  tracker: "src/worker/tracker.ts",
  check_stock_model: "src/check/stock_model.ts",
  check_trainer_predict: "src/check/trainer_predict.ts",
  selftest: "src/selftest/main.ts",
  selftest_worker: "src/selftest/worker.ts",
  closure_check: "src/closure/check.ts",
  zoo: "src/zoo/main.ts",
};

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, "wasm"), { recursive: true });

await build({
  entryPoints: Object.fromEntries(Object.entries(entries).map(([k, v]) => [k, join(here, v)])),
  outdir: out,
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  sourcemap: true,
  logLevel: "warning",
});

// TF.js wasm binaries are fetched at run time from /static/wasm/.
const wasmDir = join(here, "node_modules", "@tensorflow", "tfjs-backend-wasm", "dist");
for (const f of readdirSync(wasmDir).filter((f) => f.endsWith(".wasm"))) {
  cpSync(join(wasmDir, f), join(out, "wasm", f));
}
// Our own wasm kernels (src/wasm, AssemblyScript), two builds: relaxed SIMD and plain SIMD (own_wasm.ts picks one).
for (const [name, features] of [["relaxed", ["simd", "relaxed-simd"]], ["simd", ["simd"]]]) {
  const { error, stderr } = await asc.main([
    join(here, "assembly", "index.ts"), "-o", join(out, "wasm", `mlitb_kernels_${name}.wasm`),
    "-O3", "--noAssert", "--runtime", "stub", "--importMemory", ...features.flatMap((f) => ["--enable", f]),
  ]);
  if (error) throw new Error(`asc (${name}): ${error.message}\n${stderr.toString()}`);
}
// Swagger UI for the server's /docs page, served locally (no CDN on a closed network).
const swagger = join(here, "node_modules", "swagger-ui-dist");
mkdirSync(join(out, "swagger"), { recursive: true });
for (const f of ["swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"]) cpSync(join(swagger, f), join(out, "swagger", f));
cpSync(join(here, "node_modules", "uplot", "dist", "uPlot.min.css"), join(out, "uPlot.min.css")); // the charts' styles
cpSync(join(here, "public"), out, { recursive: true });
console.log(`built ${Object.keys(entries).join(", ")} into ${out}`);
