// Examples downloaded by a worker, kept in IndexedDB across page reloads, keyed by the data
// set's content version: a reload (or a returning volunteer) does not download them again.

const DB_NAME = "mlitb-data";
const STORE = "ranges";

let db: Promise<IDBDatabase | null> | undefined;

function open(): Promise<IDBDatabase | null> {
  db ??= new Promise((resolve) => {
    if (typeof indexedDB === "undefined") return resolve(null);
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => resolve(null); // private browsing and the like: work without a cache
  });
  return db;
}

function request<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

// The bytes under `key`, from IndexedDB if present, else from `fetcher` (then stored).
export async function cached(key: string, fetcher: () => Promise<Uint8Array>): Promise<{ bytes: Uint8Array; hit: boolean }> {
  const store = await open();
  if (store) {
    try {
      const hit = await request(store.transaction(STORE, "readonly").objectStore(STORE).get(key));
      if (hit instanceof Uint8Array) return { bytes: hit, hit: true };
    } catch {
      /* a broken cache entry is fetched again */
    }
  }
  const bytes = await fetcher();
  if (store) {
    try {
      await request(store.transaction(STORE, "readwrite").objectStore(STORE).put(bytes, key));
    } catch {
      /* quota exceeded: keep working from memory */
    }
  }
  return { bytes, hit: false };
}
