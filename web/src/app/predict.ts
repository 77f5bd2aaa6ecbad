// Prediction panel: classify an image file or a camera frame with the selected project's latest
// parameters, and teach the project the picture under a label (a new label adds a class). The image
// goes to the predictor Web Worker as an ImageBitmap; the page only shows the result.

import type { PredictReply } from "../worker/predictor";

const $ = <T extends HTMLElement>(sel: string) => document.querySelector(sel) as T;
const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
let worker: Worker | null = null;
let stream: MediaStream | null = null;
let picture: ImageBitmap | null = null; // the last picture chosen or taken, kept for teaching
let currentProject: () => { id: number | null; token?: string } = () => ({ id: null });
let ownerToken: () => string = () => "";
const invert = () => $<HTMLInputElement>("#predict-invert").checked;

function show(reply: PredictReply | { kind: "error"; message: string }) {
  const out = $("#predict-result");
  if (reply.kind === "error") {
    out.innerHTML = `<div class="error">${esc(reply.message)}</div>`;
    return;
  }
  out.innerHTML = `<ol class="top-classes">${reply.top.map((t) => `<li><span class="cls">${esc(t.name)}</span>
    <meter min="0" max="1" value="${t.p}"></meter> <span class="prob">${(t.p * 100).toFixed(1)}%</span></li>`).join("")}</ol>
    <div class="muted">latest parameters, ${reply.ms} ms in a Web Worker</div>`;
}

async function predict(image: ImageBitmap) {
  picture?.close();
  picture = await createImageBitmap(image); // a copy: the original is handed to the worker
  $<HTMLButtonElement>("#teach-add").disabled = false;
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
  worker.postMessage({ kind: "predict", project: id, token, image, invert: invert(), backend }, [image]);
}

// The picture as a PNG, inverted like the prediction input when the box is ticked, so what is taught
// is what the network sees (MNIST-style light strokes on a dark background).
async function pictureAsPng(image: ImageBitmap): Promise<Blob> {
  const canvas = document.createElement("canvas");
  canvas.width = image.width;
  canvas.height = image.height;
  const ctx = canvas.getContext("2d")!;
  ctx.drawImage(image, 0, 0);
  if (invert()) {
    const px = ctx.getImageData(0, 0, canvas.width, canvas.height);
    for (let i = 0; i < px.data.length; i += 4) for (let k = 0; k < 3; k++) px.data[i + k] = 255 - px.data[i + k];
    ctx.putImageData(px, 0, 0);
  }
  return new Promise((resolve, reject) => canvas.toBlob((b) => (b ? resolve(b) : reject(new Error("could not encode the picture"))), "image/png"));
}

async function teach(ev: Event) {
  ev.preventDefault();
  const out = $("#teach-result");
  const say = (html: string, error = false) => {
    out.className = error ? "error" : "";
    out.innerHTML = html;
  };
  const { id } = currentProject();
  const label = $<HTMLInputElement>("#teach-label").value.trim();
  if (id == null || !picture) return say("choose a picture (file or camera) first", true);
  if (!label) return say("give the picture a label", true);
  const token = ownerToken();
  say("adding…");
  const res = await fetch(`/api/projects/${id}/examples?label=${encodeURIComponent(label)}`, {
    method: "POST", body: await pictureAsPng(picture),
    headers: { "Content-Type": "image/png", ...(token ? { Authorization: `Bearer ${token}` } : {}) },
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) return say(`${esc(body.code ?? String(res.status))}: ${esc(body.message ?? res.statusText)}`, true);
  say(body.new_class
    ? `New class <b>${esc(body.label)}</b> (#${body.class_index}): the network now has ${body.classes} outputs and
       ${body.param_count.toLocaleString()} parameters; every worker gets it from round ${body.from_round}.`
    : `Added an example of <b>${esc(body.label)}</b> (#${body.class_index}); trainers use it from round ${body.from_round}.`);
  $("#teach-labels").textContent = `classes: ${body.labels.join(", ")} · ${body.train_count.toLocaleString()} training examples`;
}

export function initPredict(project: () => { id: number | null; token?: string }, owner: () => string) {
  currentProject = project;
  ownerToken = owner;
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
      $("#predict-result").innerHTML = `<div class="error">camera unavailable: ${esc(String(e))}</div>`;
    }
  });
  $("#camera-snap").addEventListener("click", async () => predict(await createImageBitmap($<HTMLVideoElement>("#camera"))));
  $("#teach-form").addEventListener("submit", (ev) => teach(ev).catch((e) => {
    $("#teach-result").className = "error";
    $("#teach-result").textContent = String(e);
  }));
}
