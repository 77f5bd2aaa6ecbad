// Live charts of the selected project (uPlot): training loss, test error, power (samples/s), latency and
// trainers over rounds, fed incrementally from GET /api/projects/{id}/metrics?since=N; plus its clients table and
// its volunteers' leaderboard (GET /api/projects/{id}/volunteers).

import uPlot from "uplot";
import { authHeaders } from "../worker/connection";

const $ = <T extends HTMLElement>(sel: string) => document.querySelector(sel) as T;
const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

interface ChartDef { id: string; title: string; key: (m: any) => number | null; color: string }
const DEFS: ChartDef[] = [
  { id: "loss", title: "Training loss", key: (m) => m.loss, color: "#3559e0" },
  { id: "test_error", title: "Test error", key: (m) => m.test_error, color: "#b42318" },
  { id: "power", title: "Power (samples/s)", key: (m) => m.samples_per_s, color: "#087443" },
  { id: "latency", title: "Latency (ms, mean)", key: (m) => m.latency_ms_mean, color: "#b54708" },
  { id: "trainers", title: "Trainers", key: (m) => m.trainers, color: "#6941c6" },
];

let project: number | null = null;
let me: string | null = null; // this browser's public volunteer id, marked on the leaderboard
const LEADERBOARD_ROWS = 10;
let token: string | undefined;
let since = 0;
let rounds: number[] = [];
let series: (number | null)[][] = DEFS.map(() => []);
const plots: uPlot[] = [];

function width(): number {
  return Math.max(200, Math.min(($("#charts").clientWidth || 360) - 8, 520));
}

function build() {
  const box = $("#charts");
  box.innerHTML = "";
  plots.splice(0).forEach((p) => p.destroy());
  for (const d of DEFS) {
    const el = document.createElement("div");
    el.className = "chart";
    el.dataset.chart = d.id;
    box.appendChild(el);
    plots.push(new uPlot({
      title: d.title, width: width(), height: 160,
      scales: { x: { time: false } },
      axes: [{ label: "round" }, {}],
      series: [{ label: "round" }, { label: d.title, stroke: d.color, width: 2, spanGaps: true }],
    }, [[], []], el));
  }
}

export function setVolunteer(id: string | null) {
  me = id;
}

/** Shows the charts and clients of a project (with its invite/owner token if private). */
export function selectProject(id: number, readToken?: string) {
  if (project === id) return;
  project = id;
  token = readToken;
  since = 0;
  rounds = [];
  series = DEFS.map(() => []);
  build();
  refresh();
}

export async function refresh() {
  if (project == null) return;
  const id = project;
  const res = await fetch(`/api/projects/${id}/metrics?since=${since}`, { headers: authHeaders(token) });
  if (res.ok && id === project) {
    const rows: any[] = await res.json();
    for (const m of rows) {
      rounds.push(m.round);
      DEFS.forEach((d, k) => series[k].push(d.key(m) ?? null));
      since = m.round + 1;
    }
    if (rows.length) plots.forEach((p, k) => p.setData([rounds, series[k]] as uPlot.AlignedData));
    $("#charts-state").textContent = rounds.length ? `${rounds.length} rounds, newest ${rounds[rounds.length - 1]}` : "no rounds yet";
    if (rows.length) $("#comm-state").textContent = communication(rows[rows.length - 1]);
  }
  const cres = await fetch(`/api/projects/${id}/clients`, { headers: authHeaders(token) });
  if (!cres.ok || id !== project) return;
  const clients: any[] = await cres.json();
  $("#clients").innerHTML = clients.length
    ? clients.map((c) => `<tr><td>#${c.id}</td><td>${esc(c.role)}</td><td>${esc(c.backend ?? "–")}</td><td>${c.latency_ms ?? "–"}</td>
        <td>${c.work_ms ?? "–"}${c.role === "trainer" && c.work_share != null ? ` (${Math.round(100 * c.work_share)}% of T)` : ""}</td><td>${c.allocated ?? "–"}</td><td>${c.last_samples ?? "–"}</td></tr>`).join("")
    : `<tr><td colspan="7" class="muted">No workers connected.</td></tr>`;
  const vres = await fetch(`/api/projects/${id}/volunteers?limit=${LEADERBOARD_ROWS}`, { headers: authHeaders(token) });
  if (!vres.ok || id !== project) return;
  const board: any[] = await vres.json();
  $("#leaderboard").innerHTML = board.length
    ? board.map((v, i) => `<tr${v.volunteer === me ? ' class="me"' : ""}><td>${i + 1}</td>
        <td><code>${esc(v.volunteer)}</code>${v.volunteer === me ? " (you)" : ""}${v.connected ? "" : ' <span class="muted">offline</span>'}</td>
        <td>${v.samples.toLocaleString()}</td><td>${v.results}</td><td>${v.compute_s}</td>
        <td>${v.strikes}${v.quarantined ? ' <span class="error">quarantined</span>' : ""}</td></tr>`).join("")
    : `<tr><td colspan="6" class="muted">No credited volunteers yet: a trainer started from this page earns credit.</td></tr>`;
}

const kb = (n: number | null | undefined) => (n == null ? "–" : n < 10_000 ? `${n} B` : `${(n / 1024).toFixed(1)} KB`);

// The codecs in force and the newest round's frame bytes per trainer result (up) and per client (down).
function communication(m: any): string {
  if (!m.upload_codec) return "";
  return `${m.algorithm === "local_sgd" ? "local SGD" : "gradients"} · upload ${m.upload_codec}, ${kb(m.bytes_up_per_result)} per result · ` +
    `download ${m.download_codec}, ${kb(m.bytes_down_per_client)} per client (round ${m.round})`;
}

window.addEventListener("resize", () => plots.forEach((p) => p.setSize({ width: width(), height: 160 })));
