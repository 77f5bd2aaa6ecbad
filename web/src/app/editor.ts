// Network editor and project creation form: add, remove and reorder layers, see each layer's output
// shape and parameter count as you edit, refuse invalid networks inline, then POST /api/projects.

import { checkNetwork, fromModelJson, KEYS, LAYER_TYPES, ACTIVATIONS, newLayer, PAPER_NETWORK, type LayerSpec, type LayerType } from "./network";

const $ = <T extends HTMLElement>(sel: string) => document.querySelector(sel) as T;
const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

let layers: LayerSpec[] = PAPER_NETWORK.map((l) => ({ ...l }));
let savedWeights: ArrayBuffer | null = null; // weights.bin of a loaded model, sent after the project exists
/** Called after a project is created (the page refreshes its list). */
export let onCreated: (project: any) => void = () => {};
export const setOnCreated = (f: (project: any) => void) => (onCreated = f);

function field(i: number, key: string, value: unknown): string {
  const name = `data-layer="${i}" data-key="${key}"`;
  if (key === "activation")
    return `<label>${key} <select ${name}>${ACTIVATIONS.map((a) => `<option${a === value ? " selected" : ""}>${a}</option>`).join("")}</select></label>`;
  if (key === "padding")
    return `<label>${key} <select ${name}>${["same", "valid"].map((a) => `<option${a === value ? " selected" : ""}>${a}</option>`).join("")}</select></label>`;
  if (key === "shape")
    return `<label>${key} <input ${name} size="9" value="${esc(Array.isArray(value) ? value.join("x") : "")}" placeholder="28x28x1"></label>`;
  const step = key === "rate" ? "0.05" : "1";
  return `<label>${key} <input ${name} type="number" step="${step}" class="num" value="${value ?? ""}"${key === "stride" && value == null ? ' placeholder="=size"' : ""}></label>`;
}

function render() {
  const check = checkNetwork(layers);
  $("#layers").innerHTML = layers.map((l, i) => {
    const info = check.layers[i];
    const keys = Object.keys(KEYS[l.type as LayerType] ?? {});
    return `<li class="layer" data-index="${i}">
      <div class="layer-head"><strong>${i}. ${esc(l.type)}</strong>
        <span class="layer-out">${info?.outputShape ? `→ [${info.outputShape.join(", ")}] · ${info.params.toLocaleString()} params` : ""}</span>
        <span class="layer-tools"><button type="button" data-move="-1" data-i="${i}" aria-label="move up"${i === 0 ? " disabled" : ""}>↑</button><button type="button" data-move="1" data-i="${i}" aria-label="move down"${i === layers.length - 1 ? " disabled" : ""}>↓</button><button type="button" data-remove="${i}" aria-label="remove">✕</button></span></div>
      <div class="layer-fields">${keys.map((k) => field(i, k, l[k])).join("")}</div>
      ${info?.error ? `<div class="error layer-error">${esc(info.error)}</div>` : ""}</li>`;
  }).join("");
  $("#network-summary").textContent = check.error ? "" : `${check.paramCount.toLocaleString()} parameters in total`;
  const err = $("#network-error");
  err.textContent = check.error ?? "";
  $<HTMLButtonElement>("#create-submit").disabled = check.error != null;
}

function readField(el: HTMLInputElement | HTMLSelectElement) {
  const i = Number(el.dataset.layer), key = el.dataset.key!;
  let v: unknown = el.value;
  if (key === "shape") v = el.value.split(/[x, ]+/).filter(Boolean).map(Number);
  else if (el instanceof HTMLInputElement && el.type === "number") v = el.value === "" ? null : Number(el.value);
  if (v === null) delete layers[i][key];
  else layers[i][key] = v;
}

export function initEditor() {
  $("#add-layer-type").innerHTML = LAYER_TYPES.filter((t) => t !== "input").map((t) => `<option>${t}</option>`).join("");
  $("#layers").addEventListener("input", (ev) => {
    readField(ev.target as HTMLInputElement);
    const focused = (ev.target as HTMLElement).dataset;
    const sel = `[data-layer="${focused.layer}"][data-key="${focused.key}"]`;
    const pos = (ev.target as HTMLInputElement).selectionStart;
    render();
    const again = document.querySelector(sel) as HTMLInputElement | null;
    again?.focus();
    try { if (pos != null && again?.type === "text") again.setSelectionRange(pos, pos); } catch { /* number inputs */ }
  });
  $("#layers").addEventListener("click", (ev) => {
    const t = ev.target as HTMLElement;
    if (t.dataset.remove) layers.splice(Number(t.dataset.remove), 1);
    else if (t.dataset.move) {
      const i = Number(t.dataset.i), j = i + Number(t.dataset.move);
      if (j < 0 || j >= layers.length) return;
      [layers[i], layers[j]] = [layers[j], layers[i]];
    } else return;
    render();
  });
  $("#load-model").addEventListener("change", async () => {
    const files = Array.from($<HTMLInputElement>("#load-model").files ?? []);
    const json = files.find((f) => f.name.endsWith(".json"));
    const bin = files.find((f) => !f.name.endsWith(".json"));
    const out = $("#load-model-result");
    try {
      if (!json || !bin) throw new Error("choose both files: model.json and weights.bin");
      const loaded = fromModelJson(JSON.parse(await json.text()));
      const check = checkNetwork(loaded);
      if (check.error) throw new Error(check.error);
      if (bin.size !== check.paramCount * 4)
        throw new Error(`${bin.name} has ${bin.size} bytes; the network needs ${check.paramCount * 4} (${check.paramCount} float32)`);
      layers = loaded;
      savedWeights = await bin.arrayBuffer();
      out.className = "";
      out.textContent = `loaded ${json.name} (${loaded.length} layers) and ${bin.name}; the project starts from these weights`;
    } catch (e) {
      savedWeights = null;
      out.className = "error";
      out.textContent = (e as Error).message;
    }
    render();
  });
  $("#add-layer").addEventListener("click", () => {
    layers.push(newLayer($<HTMLSelectElement>("#add-layer-type").value as LayerType));
    render();
  });
  $("#create-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const out = $("#create-result");
    const check = checkNetwork(layers);
    if (check.error) return;
    const num = (id: string) => Number($<HTMLInputElement>(id).value);
    const body = {
      name: $<HTMLInputElement>("#create-name").value.trim(),
      dataset: $<HTMLSelectElement>("#create-dataset").value || null,
      private: $<HTMLInputElement>("#create-private").checked,
      network: layers,
      hyper: { learning_rate: num("#create-lr"), period_s: num("#create-period"), l1: num("#create-l1"),
               l2: num("#create-l2"), dropout: num("#create-dropout"),
               // communication (docs/protocol.md "Payload kinds"): fixed for the project's life
               upload_codec: $<HTMLSelectElement>("#create-upload-codec").value, topk_density: num("#create-topk-density"),
               download_codec: $<HTMLSelectElement>("#create-download-codec").value,
               algorithm: $<HTMLSelectElement>("#create-algorithm").value, inner_lr: num("#create-inner-lr"),
               outer_lr: num("#create-outer-lr"), outer_momentum: num("#create-outer-momentum") },
    };
    const res = await fetch("/api/projects", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const data = await res.json().catch(() => ({}));
    if (!res.ok) {
      out.className = "error";
      out.textContent = `The server refused the project: ${data.code ?? res.status}: ${data.message ?? res.statusText}`;
      return;
    }
    let weightsNote = "";
    if (savedWeights && checkNetwork(layers).paramCount * 4 === savedWeights.byteLength) {
      const put = await fetch(`/api/projects/${data.id}/model/weights.bin`, { method: "PUT", body: savedWeights,
        headers: { "Content-Type": "application/octet-stream", Authorization: `Bearer ${data.owner_token}` } });
      const answer = await put.json().catch(() => ({}));
      weightsNote = put.ok ? `<p id="loaded-weights">Started from the loaded weights.</p>`
        : `<p class="error">The saved weights were refused: ${esc(`${answer.code ?? put.status}: ${answer.message ?? ""}`)}</p>`;
    }
    out.className = "tokens";
    out.innerHTML = `<p>Created project <strong>#${data.id} ${esc(data.name)}</strong> (${data.param_count.toLocaleString()} parameters).</p>${weightsNote}
      <p class="warning">Keep these tokens now: they are shown only once and cannot be recovered.</p>
      <label>Owner token <input id="created-owner-token" readonly value="${esc(data.owner_token)}"></label>
      ${data.invite_token ? `<label>Invite token <input id="created-invite-token" readonly value="${esc(data.invite_token)}"></label>` : ""}`;
    onCreated(data);
  });
  render();
}
