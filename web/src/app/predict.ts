// Prediction panel: classify an image file or a camera frame with the selected project's latest
// parameters. The image goes to the predictor Web Worker as an ImageBitmap; the page only shows the result.

import type { PredictReply } from "../worker/predictor";

const $ = <T extends HTMLElement>(sel: string) => document.querySelector(sel) as T;
let worker: Worker | null = null;
let stream: MediaStream | null = null;
let currentProject: () => { id: number | null; token?: string } = () => ({ id: null });

function show(reply: PredictReply | { kind: "error"; message: string }) {
  const out = $("#predict-result");
  if (reply.kind === "error") {
    out.innerHTML = `<div class="error">${reply.message.replace(/[&<>]/g, "")}</div>`;
    return;
  }
  out.innerHTML = `<ol class="top-classes">${reply.top.map((t) => `<li><span class="cls">class ${t.label}</span>
    <meter min="0" max="1" value="${t.p}"></meter> <span class="prob">${(t.p * 100).toFixed(1)}%</span></li>`).join("")}</ol>
    <div class="muted">latest parameters, ${reply.ms} ms in a Web Worker</div>`;
}

function predict(image: ImageBitmap) {
  const { id, token } = currentProject();
  if (id == null) {
    image.close();
    $("#predict-result").innerHTML = `<div class="error">select a project first</div>`;
    return;
  }
  worker ??= new Worker("/static/predictor.js", { type: "module", name: "predictor" });
  worker.onmessage = (ev) => show(ev.data);
  $("#predict-result").textContent = "classifying…";
  const backend = new URLSearchParams(location.search).get("backend") ?? "auto";
  worker.postMessage({ kind: "predict", project: id, token, image, invert: $<HTMLInputElement>("#predict-invert").checked, backend }, [image]);
}

export function initPredict(project: () => { id: number | null; token?: string }) {
  currentProject = project;
  $("#predict-file").addEventListener("change", async () => {
    const file = $<HTMLInputElement>("#predict-file").files?.[0];
    if (file) predict(await createImageBitmap(file));
  });
  $("#camera-start").addEventListener("click", async () => {
    try {
      stream ??= await navigator.mediaDevices.getUserMedia({ video: true });
      const video = $<HTMLVideoElement>("#camera");
      video.srcObject = stream;
      video.hidden = false;
      await video.play();
      $<HTMLButtonElement>("#camera-snap").disabled = false;
    } catch (e) {
      $("#predict-result").innerHTML = `<div class="error">camera unavailable: ${String(e).replace(/[&<>]/g, "")}</div>`;
    }
  });
  $("#camera-snap").addEventListener("click", async () => predict(await createImageBitmap($<HTMLVideoElement>("#camera"))));
}
