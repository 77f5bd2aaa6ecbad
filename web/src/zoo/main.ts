// Model zoo page (/zoo): the research closures stored on this server, each with its description and
// metrics; download one, or fork it into a new project (continue from its weights or restart from its seed).

interface ClosureInfo {
  id: string;
  name: string;
  description: string;
  created: number;
  rounds: number;
  test_error: number | null;
  loss: number | null;
  dataset: string | null;
  param_count: number;
  size: number;
  verifiable?: boolean; // false: no reported test error to recompute, and `unverifiable_reason` says why
  unverifiable_reason?: string | null;
}

// the test error, or why there is none a verifier could recompute (closures stored before this field: just "–")
const testError = (c: ClosureInfo) => c.verifiable === false
  ? `<span class="muted" title="${esc(c.unverifiable_reason ?? "")}">not verifiable</span>` : num(c.test_error);

const $ = (sel: string) => document.querySelector(sel) as HTMLElement;
const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const num = (v: number | null, digits = 4) => (v == null ? "–" : v.toFixed(digits));

async function fork(id: string, mode: string): Promise<void> {
  const res = await fetch(`/api/closures/${encodeURIComponent(id)}/fork`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ mode }),
  });
  const body = await res.json();
  $("#result").textContent = res.ok
    ? `Created project ${body.id} (${body.name}). Owner token, shown only now: ${body.owner_token}`
    : `Fork failed: ${body.code}: ${body.message}`;
}

async function refresh(): Promise<void> {
  const res = await fetch("/api/closures");
  const list = (await res.json()) as ClosureInfo[];
  $("#closures").innerHTML = list.length
    ? list.map((c) => `<tr>
        <td>${esc(c.name)}<br><span class="muted">${esc(c.id)}</span></td>
        <td>${esc(c.description || "")}</td>
        <td>${esc(c.dataset ?? "–")}</td><td>${c.param_count}</td><td>${c.rounds}</td>
        <td>${num(c.loss)}</td><td>${testError(c)}</td>
        <td><a href="/api/closures/${encodeURIComponent(c.id)}/download" download>download</a>
          <button data-fork="${esc(c.id)}" data-mode="continue">fork (continue)</button>
          <button data-fork="${esc(c.id)}" data-mode="restart">fork (restart)</button></td></tr>`).join("")
    : `<tr><td colspan="8" class="muted">No closures stored yet: save one with the project's owner token.</td></tr>`;
  document.querySelectorAll<HTMLButtonElement>("button[data-fork]").forEach((b) => {
    b.onclick = () => fork(b.dataset.fork!, b.dataset.mode!);
  });
}

async function save(form: HTMLFormElement): Promise<void> {
  const f = new FormData(form);
  const res = await fetch(`/api/projects/${encodeURIComponent(String(f.get("project")))}/closures`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${f.get("token")}` },
    body: JSON.stringify({ description: f.get("description") ?? "" }),
  });
  const body = await res.json();
  $("#saved").textContent = !res.ok ? `Save failed: ${body.code}: ${body.message}`
    : `Saved closure ${body.id} at round ${body.rounds}.` +
      (body.verifiable === false ? ` Warning: it cannot be verified: ${body.unverifiable_reason}` : "");
  if (res.ok) await refresh();
}

($("#save") as HTMLFormElement).onsubmit = (ev) => {
  ev.preventDefault();
  save(ev.target as HTMLFormElement).catch((e) => ($("#saved").textContent = String(e)));
};
refresh().catch((e) => ($("#result").textContent = String(e)));
