// The page (thin entry): lists the master's projects, starts trainer/tracker Web Workers in this tab and
// shows their status; the editor, charts, project panel and prediction live in their own modules.
// Training and prediction never run on this thread.
// Query parameters (used by `mlitb worker` / `mlitb demo`): ?project=ID&join=trainer,tracker&backend=wasm

import { type WorkerStatus } from "../worker/connection";
import "./upload";
import * as charts from "./charts";
import { initEditor, setOnCreated } from "./editor";
import { initPredict } from "./predict";
import * as panel from "./project";
import { volunteerKey } from "./volunteer";

interface ProjectSummary {
  id: number;
  name: string;
  dataset: string | null;
  round: number;
  trainers: number;
  trackers: number;
  param_count: number;
  test_error: number | null;
  labels: string[] | null;
  hyper: { learning_rate: number; period_s: number };
}

interface RunningWorker {
  id: number;
  project: number;
  worker: Worker;
  status: WorkerStatus;
}

const running: RunningWorker[] = [];
let nextId = 1;
let selected: number | null = null;
let listed: ProjectSummary[] = [];
const latencyMs = new Map<number, number>(); // client id -> the master's round-trip estimate for it
const params = new URLSearchParams(location.search);
const forcedBackend = params.get("backend") ?? "auto";
// The invite token of a private project travels in the link's fragment (`#token=`), which browsers never send,
// so it never reaches a server log; an older `?token=` link is moved into the fragment at once.
const fragment = new URLSearchParams(location.hash.slice(1));
const projectToken = fragment.get("token") ?? params.get("token") ?? undefined;
if (params.has("token")) {
  params.delete("token");
  fragment.set("token", projectToken!);
  history.replaceState(null, "", `${location.pathname}${params.toString() ? `?${params}` : ""}#${fragment}`);
}

// Exposed for headless drivers and tests: a snapshot of every worker in this tab.
(window as any).mlitb = {
  workers: () => running.map((w) => ({ id: w.id, project: w.project, ...w.status })),
  startWorker: (project: number, role: "trainer" | "tracker") => startWorker(project, role),
  stopWorker: (id: number) => stopWorker(id),
};

const $ = <T extends HTMLElement>(sel: string) => document.querySelector(sel) as T;
const contributed = new Map<number, number>(); // project -> samples credited to this browser's volunteer id
let myVolunteer: string | null = null;
const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const pct = (x: number | null | undefined) => (x == null ? "–" : `${(x * 100).toFixed(2)}%`);

function startWorker(project: number, role: "trainer" | "tracker"): number {
  const worker = new Worker(`/static/${role}.js`, { type: "module", name: `${role}-${project}` });
  const entry: RunningWorker = { id: nextId++, project, worker, status: { role, state: "starting" } };
  worker.onmessage = (ev) => {
    if (ev.data?.kind === "status") {
      entry.status = ev.data.status;
      renderWorkers();
    }
  };
  worker.onerror = (ev) => {
    entry.status = { ...entry.status, state: "error", error: ev.message };
    renderWorkers();
  };
  worker.postMessage({ kind: "start", options: { server: location.origin, project, backend: forcedBackend, token: projectToken,
    volunteer: volunteerKey() } });
  running.push(entry);
  showProject(project);
  renderWorkers();
  return entry.id;
}

function stopWorker(id: number) {
  const i = running.findIndex((w) => w.id === id);
  if (i < 0) return;
  running[i].worker.postMessage({ kind: "stop" });
  setTimeout(() => running[i]?.worker.terminate(), 500);
  running.splice(i, 1);
  renderWorkers();
}

async function refreshProjects() {
  try {
    const res = await fetch("/api/projects");
    const projects: ProjectSummary[] = await res.json();
    listed = projects;
    $("#projects").innerHTML = projects.length
      ? projects.map((p) => `
        <tr data-project-row="${p.id}"${p.id === selected ? ' class="selected"' : ""}>
          <td><button class="link" data-select="${p.id}">${esc(p.name)}</button><div class="muted">#${p.id} · ${esc(p.dataset ?? (p.labels ? `uploaded, ${p.labels.length} classes` : "no data"))} · ${p.param_count.toLocaleString()} params</div></td>
          <td>${p.round}</td><td>${p.trainers}</td><td>${p.trackers}</td><td>${pct(p.test_error)}</td>
          <td class="actions"><button data-join="trainer" data-project="${p.id}">Join as trainer</button>
              <button data-join="tracker" data-project="${p.id}">Join as tracker</button></td>
        </tr>`).join("")
      : `<tr><td colspan="6" class="muted">No projects yet. Create one with <code>POST /api/projects</code> or run <code>mlitb demo</code>.</td></tr>`;
    $("#server-state").textContent = `connected · ${projects.length} project(s)`;
    await refreshLatencies();
  } catch (e) {
    $("#server-state").textContent = `server unreachable: ${e}`;
  }
  if (selected != null) showProject(selected);
}

// The master's latency estimate of each worker in this tab (it sets the worker's work time from it), and the
// samples the master credited to this browser's volunteer id in each project a trainer of this tab helps.
async function refreshLatencies() {
  const auth: Record<string, string> = projectToken ? { Authorization: `Bearer ${projectToken}` } : {};
  for (const pid of new Set(running.map((w) => w.project))) {
    const res = await fetch(`/api/projects/${pid}/clients`, { headers: auth });
    if (!res.ok) continue;
    for (const c of await res.json()) if (c.latency_ms != null) latencyMs.set(c.id, Math.round(c.latency_ms));
    myVolunteer = running.find((w) => w.status.volunteer)?.status.volunteer ?? myVolunteer;
    if (!myVolunteer) continue;
    const board = await fetch(`/api/projects/${pid}/volunteers?limit=1000`, { headers: auth });
    if (board.ok) contributed.set(pid, (await board.json()).find((r: any) => r.volunteer === myVolunteer)?.samples ?? 0);
  }
  charts.setVolunteer(myVolunteer);
  renderWorkers();
}

function showProject(id: number) {
  selected = id;
  const p = listed.find((q) => q.id === id);
  if (p) panel.select(p, projectToken);
  else if (panel.selectedId() !== id) panel.select({ id, name: "" }, projectToken); // a private project via its invite link
  charts.refresh();
}

function renderWorkers() {
  $("#workers").innerHTML = running.length
    ? running.map((w) => {
        const s = w.status;
        return `<tr>
          <td>${s.role} #${w.id}<div class="muted">project #${w.project}</div>${s.role === "trainer" && contributed.has(w.project)
            ? `<div class="contributed">you have contributed ${contributed.get(w.project)!.toLocaleString()} samples to this project</div>` : ""}</td>
          <td>${esc(s.state)}${s.error ? `<div class="error">${esc(s.error)}</div>` : ""}</td>
          <td title="${esc(s.backendDetail ?? "")}">${esc(s.backend ?? "…")}</td>
          <td>${s.round ?? "–"}</td><td>${s.samplesPerS ?? "–"}</td><td>${s.workMs ?? "–"}</td>
          <td class="latency">${s.role === "trainer" && s.clientId != null && latencyMs.has(s.clientId) ? latencyMs.get(s.clientId) : "–"}</td>
          <td>${s.role === "tracker" ? pct(s.testError) : s.loss?.toFixed(4) ?? "–"}</td>
          <td><button data-stop="${w.id}">Stop</button></td></tr>`;
      }).join("")
    : `<tr><td colspan="9" class="muted">No workers in this tab. Pick a project and join.</td></tr>`;
}

document.addEventListener("click", (ev) => {
  const t = ev.target as HTMLElement;
  if (t.dataset.join) startWorker(Number(t.dataset.project), t.dataset.join as "trainer" | "tracker");
  if (t.dataset.stop) stopWorker(Number(t.dataset.stop));
  if (t.dataset.select) showProject(Number(t.dataset.select));
});

$("#isolation").textContent = crossOriginIsolated ? "cross-origin isolated (wasm threads available)" : "not cross-origin isolated";
const autoProject = Number(params.get("project"));
if (autoProject) selected = autoProject; // ?project=N opens that project's panel
for (const role of (params.get("join") ?? "").split(",").filter(Boolean)) {
  if (autoProject && (role === "trainer" || role === "tracker")) startWorker(autoProject, role);
}
initEditor();
setOnCreated((p) => { selected = p.id; refreshProjects(); });
panel.initProjectPanel(() => { selected = null; refreshProjects(); });
initPredict(() => ({ id: panel.selectedId(), token: projectToken }), panel.ownerToken);
renderWorkers();
refreshProjects();
setInterval(refreshProjects, 2000);
