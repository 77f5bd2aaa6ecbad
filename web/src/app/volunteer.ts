// This browser's volunteer identity: a random secret key kept in localStorage, sent in JOIN; the master credits
// results to its public id (the first 16 hex digits of its SHA-256), so credit follows the volunteer across tabs,
// reconnections and server restarts, and the public id on the leaderboard does not let anyone earn in its name.

const STORAGE_KEY = "mlitb-volunteer-key";

export function volunteerKey(): string | undefined {
  try {
    let key = localStorage.getItem(STORAGE_KEY);
    if (!key || !/^[A-Za-z0-9_-]{16,128}$/.test(key)) {
      const bytes = crypto.getRandomValues(new Uint8Array(24)); // available in insecure contexts too
      key = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
      localStorage.setItem(STORAGE_KEY, key);
    }
    return key;
  } catch {
    return undefined; // storage blocked (a private window's policy): train anonymously, without credit
  }
}
