// Finding a gateway (`mlitb serve --ray`), the page's twin of mlitb/workers/gateways.py: a cluster's gateways
// answer GET /api/gateways with their URLs, least loaded first. A worker's WebSocket goes to the least loaded one,
// and after its connection ends to the least loaded other one. A single-process server has no /api/gateways (404):
// the worker then stays on it, exactly as before, and never asks again.
//
// The list is only read from the page's own gateway (`home`): the page is cross-origin isolated and gateways answer
// no CORS, so another gateway's HTTP is out of reach; only the WebSocket (which COEP does not govern) goes there.
// The model, data and proof-of-work challenge stay on `home`. When `home` does not answer, the gateways it listed
// before are tried in turn.
//
// What a listed URL may be (the list comes from the server whose code this page runs, so limiting hosts would
// protect nothing while breaking clusters spread over several hosts): http or https only, https only when the page
// came over https (no downgrade, which the browser's mixed-content rule would block anyway), an origin only (no user
// name or password, path, query or fragment); at most MAX_LISTED entries are read. Anything else is skipped.

const MAX_LISTED = 64;
const LIST_TIMEOUT_MS = 2000;

export function gatewayOrigin(server: string, url: unknown): string | null {
  if (typeof url !== "string" || url.length > 2048) return null;
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return null;
  }
  const s = new URL(server);
  if (u.protocol !== "http:" && u.protocol !== "https:") return null;
  if (s.protocol === "https:" && u.protocol !== "https:") return null;
  if (!u.hostname || u.username || u.password || (u.pathname !== "/" && u.pathname !== "") || u.search || u.hash) return null;
  // URL keeps "?" and "#" with nothing after them out of search/hash: refuse them from the text itself
  if (/[?#]/.test(url)) return null;
  return u.origin;
}

export class GatewayChooser {
  readonly home: string;
  private known: string[];
  private clustered: boolean | null = null; // null: not asked yet; false: a single process
  private first = true;
  current: string;

  constructor(server: string) {
    this.home = new URL(server).origin;
    this.known = [this.home];
    this.current = this.home;
  }

  // The followable gateways home lists, least loaded first; null for a single-process server (no list at all).
  private async list(): Promise<string[] | null> {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), LIST_TIMEOUT_MS);
    try {
      const res = await fetch(new URL("/api/gateways", this.home), { signal: ctl.signal });
      if (res.status === 404 && this.clustered === null) {
        this.clustered = false;
        return null;
      }
      if (!res.ok) return [];
      const body: unknown = await res.json();
      if (!Array.isArray(body)) return [];
      const found: string[] = [];
      for (const g of body.slice(0, MAX_LISTED)) {
        const o = gatewayOrigin(this.home, g && typeof g === "object" ? (g as { url?: unknown }).url : null);
        if (o && !found.includes(o)) found.push(o);
      }
      if (found.length) {
        this.clustered = true;
        this.known = [...found, ...this.known.filter((u) => !found.includes(u))];
      }
      return found;
    } catch {
      return []; // home is gone (or answered garbage): the gateways known are tried in turn
    } finally {
      clearTimeout(timer);
    }
  }

  // The gateway for the next connection: the least loaded for the first, then (after a connection ended or failed)
  // the least loaded other than the current one, or the current one if it is the only one.
  async choose(): Promise<string> {
    if (this.clustered === false) return this.current;
    const first = this.first;
    this.first = false;
    const listed = await this.list();
    if (listed === null) return this.current;
    let pick: string;
    if (!listed.length) {
      const others = this.known.filter((u) => u !== this.current);
      pick = first || !others.length ? this.current : others[0];
    } else pick = first ? listed[0] : listed.find((u) => u !== this.current) ?? listed[0];
    this.current = pick;
    return pick;
  }

  // Back to the page's own gateway (a join elsewhere wanted a proof of work, whose challenge only home can give).
  goHome(): string {
    this.current = this.home;
    return this.home;
  }
}
