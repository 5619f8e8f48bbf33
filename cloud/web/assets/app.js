// Gatehouse console: polls the hub's StatusService over Connect (JSON) and
// renders the hub and every site's edge nodes. No framework, no build step.
"use strict";

const STATUS_URL = "/gatehouse.status.v1.StatusService/GetStatus";

// The console's own calls (decisions, divergences) need an API key of role
// admin or security. It is kept for this tab only (sessionStorage); a key
// handed over in the address's fragment (#key=..., which a browser never
// sends to a server) is taken and removed from the address bar.
const KEY_STORE = "gatehouse.apiKey";

(function takeKeyFromFragment() {
  const m = /(?:^#|&)key=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(KEY_STORE, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
})();

// NeedKey is thrown when the hub refuses the console's key (or its lack).
class NeedKey extends Error {}

function showKeyForm(why) {
  document.getElementById("keywhy").textContent = why || "";
  document.getElementById("keyform").hidden = false;
}

document.getElementById("keyform").addEventListener("submit", ev => {
  ev.preventDefault();
  sessionStorage.setItem(KEY_STORE, document.getElementById("keyinput").value.trim());
  document.getElementById("keyinput").value = "";
  document.getElementById("keyform").hidden = true;
  refreshAll();
});

// consoleCall posts body to a ConsoleService method with the tab's key
// and returns the response and its JSON; it throws NeedKey when the hub
// refuses the key.
async function consoleCall(url, body) {
  const headers = { "Content-Type": "application/json", "Connect-Protocol-Version": "1" };
  const key = sessionStorage.getItem(KEY_STORE);
  if (key) headers["Authorization"] = "Bearer " + key;
  const res = await fetch(url, { method: "POST", headers, body: JSON.stringify(body) });
  const msg = await res.json();
  if (msg.code === "unauthenticated" || msg.code === "permission_denied") {
    showKeyForm(key ? "The hub refused this key: " + msg.message : "");
    throw new NeedKey(msg.message);
  }
  return { res, msg };
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text === undefined || text === null ? "" : String(text);
  if (cls) td.className = cls;
  return td;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) tr.appendChild(c);
  return tr;
}

function health(ok) {
  return cell(ok ? "healthy" : "unhealthy", ok ? "ok" : "bad");
}

function duration(s) {
  s = Number(s || 0);
  if (s < 120) return s + " s";
  if (s < 7200) return Math.floor(s / 60) + " min";
  return Math.floor(s / 3600) + " h";
}

function renderHub(self) {
  const body = document.querySelector("#hub tbody");
  body.replaceChildren(row([cell(self.kind + " " + (self.id || "")), cell(self.version), health(self.healthy),
    cell(duration(self.uptimeS)), cell(self.apiAddr)]));
}

function renderSites(sites) {
  const root = document.getElementById("sites");
  if (!sites || sites.length === 0) {
    const p = document.createElement("p");
    p.className = "muted";
    p.textContent = "No sites registered.";
    root.replaceChildren(p);
    return;
  }
  const parts = [];
  for (const site of sites) {
    const h = document.createElement("h3");
    h.textContent = (site.name || site.siteId) + " (" + site.siteId + ")";
    const table = document.createElement("table");
    table.className = "site";
    const head = document.createElement("thead");
    head.appendChild(row(["Node", "Role", "Health", "Leader", "Applied", "Commit", "API", "Detail"].map(t => {
      const th = document.createElement("th"); th.textContent = t; return th;
    })));
    const body = document.createElement("tbody");
    for (const n of site.nodes || []) {
      body.appendChild(row([cell(n.id), cell(n.role), health(n.healthy), cell(n.leaderId),
        cell(n.appliedIndex || 0), cell(n.commitIndex || 0), cell(n.apiAddr), cell(n.detail)]));
    }
    table.append(head, body);
    parts.push(h, table);
    const devices = site.devices || [];
    const dh = document.createElement("h3");
    dh.textContent = "Devices (" + devices.length + ")";
    const dt = document.createElement("table");
    dt.className = "devices";
    const dhead = document.createElement("thead");
    dhead.appendChild(row(["Device", "Kind", "State", "Last seen", "Node", "Firmware"].map(t => {
      const th = document.createElement("th"); th.textContent = t; return th;
    })));
    const dbody = document.createElement("tbody");
    for (const d of devices) {
      const seen = Number(d.lastSeenMs || 0);
      dbody.appendChild(row([cell(d.id), cell(d.kind), cell(d.online ? "online" : "offline", d.online ? "ok" : "bad"),
        cell(seen ? new Date(seen).toLocaleTimeString() : "never"), cell(d.node), cell(d.firmware)]));
    }
    dt.append(dhead, dbody);
    parts.push(dh, dt);
  }
  root.replaceChildren(...parts);
}

async function refresh() {
  const err = document.getElementById("error");
  try {
    const res = await fetch(STATUS_URL, {
      method: "POST",
      headers: { "Content-Type": "application/json", "Connect-Protocol-Version": "1" },
      body: "{}",
    });
    const msg = await res.json();
    if (!res.ok) throw new Error(msg.message || res.statusText);
    renderHub(msg.self || {});
    renderSites(msg.sites || []);
    err.hidden = true;
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    err.textContent = "Cannot reach the hub: " + e.message;
    err.hidden = false;
  }
}

const DECISIONS_URL = "/gatehouse.console.v1.ConsoleService/ListDecisions";
const MAX_DECISION_ROWS = 50;
let decisionCursor = 0;

function reasonText(r) {
  // Connect's JSON gives enum names like "REASON_NO_OFFLINE_ACCESS".
  return String(r || "REASON_GRANTED").replace(/^REASON_/, "").toLowerCase().replace(/_/g, " ");
}

async function refreshDecisions() {
  const { res, msg } = await consoleCall(DECISIONS_URL, { afterCursor: String(decisionCursor), limit: MAX_DECISION_ROWS });
  if (!res.ok) throw new Error(msg.message || res.statusText);
  const body = document.querySelector("#decisions tbody");
  const fresh = msg.decisions || [];
  if (decisionCursor === 0 || msg.truncated) body.replaceChildren();
  decisionCursor = Number(msg.cursor || 0);
  if (fresh.length === 0) return;
  if (body.querySelector("td[colspan]")) body.replaceChildren();
  for (const d of fresh) {
    const tr = row([cell(new Date(Number(d.atMs || 0)).toLocaleTimeString()), cell(d.siteName || d.siteId),
      cell(d.doorId), cell(d.cardMasked), cell(d.granted ? "granted" : "denied", d.granted ? "ok" : "bad"),
      cell(reasonText(d.reason)), cell(d.node)]);
    body.insertBefore(tr, body.firstChild);
  }
  while (body.children.length > MAX_DECISION_ROWS) body.removeChild(body.lastChild);
}

const DIVERGENCES_URL = "/gatehouse.console.v1.ConsoleService/ListDivergences";

// refreshDivergences lists the sources the hub's digests found to differ
// between the hub and a site (docs/replication.md §11): one row each, or one
// row per site saying none. A hub without a store replicates nothing.
async function refreshDivergences() {
  const { res, msg } = await consoleCall(DIVERGENCES_URL, {});
  const body = document.querySelector("#divergences tbody");
  if (msg.code === "failed_precondition") {
    body.replaceChildren(row([cell("This hub replicates with no site.", "muted")]));
    body.firstChild.firstChild.colSpan = 4;
    return;
  }
  if (!res.ok) throw new Error(msg.message || res.statusText);
  const rows = [];
  for (const s of msg.sites || []) {
    const site = s.siteName ? s.siteName + " (" + s.siteId + ")" : s.siteId;
    const link = cell(s.connected ? "connected" : "disconnected", s.connected ? "ok" : "muted");
    const ds = s.divergences || [];
    if (ds.length === 0) {
      rows.push(row([cell(site), link, cell("none", "ok"), cell("")]));
      continue;
    }
    for (const d of ds) {
      rows.push(row([cell(site), cell(link.textContent, link.className), cell(d.source, "bad"), cell(d.seq)]));
    }
  }
  if (rows.length === 0) {
    rows.push(row([cell("No sites.", "muted")]));
    rows[0].firstChild.colSpan = 4;
  }
  body.replaceChildren(...rows);
}

async function refreshAll() {
  await refresh();
  try {
    await refreshDecisions();
  } catch (e) {
    if (e instanceof NeedKey) return;
    const err = document.getElementById("error");
    err.textContent = "Cannot read decisions: " + e.message;
    err.hidden = false;
  }
  try {
    await refreshDivergences();
  } catch (e) {
    if (e instanceof NeedKey) return;
    const err = document.getElementById("error");
    err.textContent = "Cannot read divergences: " + e.message;
    err.hidden = false;
  }
}

refreshAll();
setInterval(refreshAll, 1000);
