// Selected-project panel: owner-token actions (live learning rate and period T, delete), model
// download links, and the charts/clients view for the project chosen in the list.

import * as charts from "./charts";

const $ = <T extends HTMLElement>(sel: string) => document.querySelector(sel) as T;
const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

let selected: { id: number; name: string } | null = null;
let afterDelete: () => void = () => {};
export const ownerToken = () => $<HTMLInputElement>("#owner-token").value.trim();
const bearer = (): Record<string, string> => (ownerToken() ? { Authorization: `Bearer ${ownerToken()}` } : {});

export const selectedId = () => selected?.id ?? null;

function say(text: string, error = false) {
  const out = $("#project-result");
  out.className = error ? "error" : "";
  out.textContent = text;
}

async function failure(res: Response): Promise<string> {
  const body = await res.json().catch(() => ({}));
  return `${body.code ?? res.status}: ${body.message ?? res.statusText}`;
}

/** Shows one project (summary from GET /api/projects) in the panel. */
export function select(p: { id: number; name: string; hyper?: { learning_rate: number; period_s: number }; labels?: string[] | null },
                       readToken?: string) {
  const changed = selected?.id !== p.id;
  selected = { id: p.id, name: p.name };
  $("#project-panel").hidden = false;
  $("#project-title").textContent = `Project #${p.id} ${p.name}`;
  const base = `/api/projects/${p.id}/model`;
  $("#model-links").innerHTML = `<a id="download-model" href="${base}/model.json" download="model.json">model.json</a> ·
    <a id="download-weights" href="${base}/weights.bin" download="weights.bin">weights.bin</a>`;
  if (changed && p.hyper) {
    $<HTMLInputElement>("#hyper-lr").value = String(p.hyper.learning_rate);
    $<HTMLInputElement>("#hyper-period").value = String(p.hyper.period_s);
    say("");
  }
  if (p.labels) $("#teach-labels").textContent = `classes: ${p.labels.join(", ")}`;
  charts.selectProject(p.id, readToken);
}

export function initProjectPanel(onDeleted: () => void) {
  afterDelete = onDeleted;
  // `#owner=TOKEN` (the link `mlitb demo` prints) fills the owner token: a fragment never leaves the browser, so
  // the token is not in any request line or server log; it is removed from the address bar at once
  const owner = new URLSearchParams(location.hash.slice(1)).get("owner");
  if (owner) {
    $<HTMLInputElement>("#owner-token").value = owner;
    history.replaceState(null, "", location.pathname + location.search);
  }
  $("#hyper-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!selected) return;
    const body = { learning_rate: Number($<HTMLInputElement>("#hyper-lr").value), period_s: Number($<HTMLInputElement>("#hyper-period").value) };
    const res = await fetch(`/api/projects/${selected.id}/hyper`, { method: "PATCH", headers: { "Content-Type": "application/json", ...bearer() }, body: JSON.stringify(body) });
    if (!res.ok) return say(await failure(res), true);
    const data = await res.json();
    say(`learning rate ${data.hyper.learning_rate}, T ${data.hyper.period_s} s from round ${data.from_round}`);
  });
  $("#delete-project").addEventListener("click", async () => {
    if (!selected) return;
    const { id, name } = selected;
    if (!confirm(`Delete project #${id} ${name}? Its model and metrics are lost.`)) return;
    const res = await fetch(`/api/projects/${id}`, { method: "DELETE", headers: bearer() });
    if (!res.ok) return say(await failure(res), true);
    selected = null;
    $("#project-panel").hidden = true;
    $("#deleted").innerHTML = `Deleted project #${id} ${esc(name)}.`;
    afterDelete();
  });
}
