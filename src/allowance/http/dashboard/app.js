// The allowance dashboard: plain DOM, no libraries, every call to this same service with the
// key the viewer gave once (kept in localStorage). Text from the service is set with
// textContent, never as HTML: account ids and messages are any printable text.
"use strict";

const KEY = "allowance-key";
const view = document.getElementById("view");
const status = document.getElementById("status");
const form = document.getElementById("key-form");
const forget = document.getElementById("forget");
let ticking = null;

class Refused extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

async function api(path) {
  const answer = await fetch(path, {
    headers: { Authorization: "Bearer " + localStorage.getItem(KEY) },
  });
  const body = await answer.json().catch(() => ({}));
  if (answer.status === 401) {
    localStorage.removeItem(KEY);
    askForKey("That key is unknown or revoked.");
    throw new Refused(401, "no key");
  }
  if (!answer.ok) throw new Refused(answer.status, body.detail || answer.statusText);
  return body;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "text") node.textContent = value;
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) {
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
  }
  return node;
}

function table(head, rows) {
  return el("table", {},
    el("thead", {}, el("tr", {}, ...head.map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, ...rows.map((cells) => el("tr", {}, ...cells.map((c) =>
      c instanceof Node ? el("td", {}, c) : el("td", { class: "line", text: String(c) }))))));
}

function accountLink(id) {
  return el("a", { href: "#/accounts/" + encodeURIComponent(id), text: id });
}

// "Tue 8 Dec, 01:18" in the viewer's time zone and in UTC
function when(iso) {
  const at = new Date(iso);
  const opts = { weekday: "short", day: "numeric", month: "short", hour: "2-digit",
    minute: "2-digit", second: "2-digit" };
  const local = at.toLocaleString(undefined, opts);
  const utc = at.toLocaleString("en-GB", { ...opts, timeZone: "UTC" });
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  return { local: `${local} (${zone})`, utc: `${utc} UTC` };
}

function countdown(iso) {
  let left = Math.max(0, Math.round((new Date(iso) - Date.now()) / 1000));
  if (left === 0) return "now";
  const parts = [];
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["min", 60], ["s", 1]]) {
    if (left >= size || (unit === "s" && parts.length < 2)) {
      parts.push(`${Math.floor(left / size)} ${unit}`);
      left %= size;
    }
  }
  return "in " + parts.slice(0, 3).join(" ");
}

function resets(iso) {
  if (!iso) return el("span", { class: "muted", text: "—" });
  const shown = when(iso);
  return el("time", { datetime: iso, "data-resets": iso },
    el("strong", { class: "left", text: countdown(iso) }), el("br"),
    el("span", { class: "muted", text: `${shown.local} · ${shown.utc}` }));
}

function tick() {
  for (const node of document.querySelectorAll("[data-resets] .left")) {
    node.textContent = countdown(node.parentElement.dataset.resets);
  }
}

function meter(m) {
  if (m.max === null) return el("span", { class: "muted", text: "unlimited" });
  const share = m.max === 0 ? 1 : Math.min(1, m.used / m.max);
  const bar = el("span", { style: `width: ${(share * 100).toFixed(1)}%` });
  const state = share >= 1 ? " full" : share >= 0.8 ? " near" : "";
  return el("span", { class: "meter" + state, role: "meter", "aria-valuemin": "0",
    "aria-valuemax": String(m.max), "aria-valuenow": String(m.used),
    "aria-label": `${m.limit}: ${m.used} of ${m.max}` }, bar);
}

// The last events (of one account, or of all): oldest first from the service, so read to
// the end a page at a time (at most a few pages here). null: the store keeps none, or this
// key may not read them all.
async function lastEvents(account) {
  let after = 0;
  let kept = [];
  for (let page = 0; page < 5; page++) {
    let found;
    try {
      found = await api(`/v1/events?limit=1000&after=${after}` + (account ? "&account=" + encodeURIComponent(account) : ""));
    } catch (error) {
      if (error instanceof Refused && (error.status === 501 || error.status === 403)) return null;
      throw error;
    }
    kept = kept.concat(found.events).slice(-50);
    if (found.events.length < 1000) break;
    after = found.events[found.events.length - 1].id;
  }
  return kept.reverse();
}

// The account's last ledger rows: read oldest first, a page at a time, newest kept (at most a
// few pages here: an export reads the rest). null: the store keeps no ledger.
async function lastRows(account) {
  let cursor = null;
  let kept = [];
  for (let page = 0; page < 5; page++) {
    let found;
    try {
      found = await api(`/v1/accounts/${encodeURIComponent(account)}/ledger?limit=1000` + (cursor ? "&cursor=" + encodeURIComponent(cursor) : ""));
    } catch (error) {
      if (error instanceof Refused && error.status === 501) return null;
      throw error;
    }
    kept = kept.concat(found.rows).slice(-50);
    if (found.next_cursor === null) break;
    cursor = found.next_cursor;
  }
  return kept.reverse();
}

function rowLine(r) {
  const d = r.data;
  if (r.kind === "plan_change") return `plan ${d.from} → ${d.to}, ${d.seats} seat${d.seats === 1 ? "" : "s"}`;
  if (r.kind === "override") return `${r.limit}: max ${d.max === null ? "of the plan again" : d.max}`;
  if (r.kind === "grant") return `${r.limit}: +${r.amount} until ${when(d.expires_at).utc}`;
  if (r.kind === "billing_anchor") return d.anchor ? `billing anchor ${when(d.anchor).utc}` : "calendar billing periods";
  const sign = r.amount > 0 ? "+" : "";
  return `${r.limit}: ${sign}${r.amount} ${r.feature}` + (r.user ? `, user ${r.user}` : "") + (d.reservation ? `, reservation ${d.reservation}` : "");
}

function ledgerPart(found) {
  if (found === null) return el("p", { class: "muted", text: "This store keeps no ledger." });
  if (found.length === 0) return el("p", { class: "muted", text: "Nothing recorded yet." });
  return table(["when (UTC)", "kind", "", "key", "idempotency key"],
    found.map((r) => [when(r.at).utc, r.kind, rowLine(r), r.key_id || "—", r.idempotency_key || "—"]));
}

function eventLine(e) {
  const d = e.data;
  if (e.type === "account.plan_changed") return `plan ${d.from} → ${d.to}`;
  if (e.type === "reservation.expired") return `reservation of ${d.amount} ${d.feature} expired`;
  const level = e.type === "usage.threshold" ? ` (${Math.round(d.threshold * 100)} %)` : "";
  const of = d.max !== undefined ? `${d.used} / ${d.max}` : `${d.used} over fair use ${d.fair_use}`;
  return `${e.limit}${level}: ${of}` + (d.user ? `, user ${d.user}` : "") + (d.upgrade ? `, upgrade to ${d.upgrade}` : "");
}

function eventsPart(found, withAccount) {
  if (found === null) return el("p", { class: "muted", text: "This store keeps no events (or this key reads one account only)." });
  if (found.length === 0) return el("p", { class: "muted", text: "No events yet." });
  return table(withAccount ? ["when (UTC)", "event", "account", ""] : ["when (UTC)", "event", ""],
    found.map((e) => withAccount ? [when(e.at).utc, e.type, accountLink(e.account), eventLine(e)]
      : [when(e.at).utc, e.type, eventLine(e)]));
}

async function homeView() {
  const [plans, accounts] = await Promise.all([api("/v1/policy/table"), api("/v1/accounts?limit=50")]);
  const search = el("input", { id: "search", type: "search", name: "prefix",
    placeholder: "account id starts with…" });
  const list = el("ul", { id: "accounts" });
  const more = el("button", { type: "button", text: "More accounts", hidden: "" });
  let cursor = null;
  let prefix = "";
  function fill(page, replace) {
    if (replace) list.replaceChildren();
    for (const a of page.accounts) {
      list.append(el("li", {}, accountLink(a.id), el("span", { class: "muted", text: ` ${a.plan}, ${a.seats} seat${a.seats === 1 ? "" : "s"}` })));
    }
    if (replace && page.accounts.length === 0) list.append(el("li", { class: "muted", text: "no account" }));
    cursor = page.next_cursor;
    more.hidden = cursor === null;
  }
  const finder = el("form", { role: "search", "aria-label": "accounts" },
    el("label", { for: "search", text: "Find an account " }), search, " ",
    el("button", { type: "submit", text: "Search" }));
  finder.addEventListener("submit", async (event) => {
    event.preventDefault();
    prefix = search.value;
    fill(await api("/v1/accounts?limit=50&prefix=" + encodeURIComponent(prefix)), true);
  });
  more.addEventListener("click", async () => {
    const query = `/v1/accounts?limit=50&prefix=${encodeURIComponent(prefix)}&cursor=${encodeURIComponent(cursor)}`;
    fill(await api(query), false);
  });
  const head = ["limit", "features", ...plans.plans.map((p) => p.title), "window"];
  const rows = plans.rows.map((r) => [r.limit, r.features.join("\n"), ...r.cells, r.window.join("\n")]);
  const recent = await lastEvents(null);
  // one row per account: its latest threshold or limit reached
  const seen = new Set();
  const crossed = recent === null ? null
    : recent.filter((e) => (e.type === "usage.threshold" || e.type === "usage.limit_reached")
      && !seen.has(e.account) && seen.add(e.account));
  view.replaceChildren(
    el("h1", { text: "Plans" }),
    el("p", { class: "muted", text: `Calendar windows in ${plans.timezone}.` }),
    table(head, rows),
    el("h2", { text: "Accounts" }), finder, list, more,
    el("h2", { text: "Crossed a threshold recently" }), eventsPart(crossed, true));
  fill(accounts, true);
}

async function accountView(id) {
  const path = "/v1/accounts/" + encodeURIComponent(id);
  const [account, usage, answers, plans, recent, rows] = await Promise.all([
    api(path), api(path + "/usage"), api(path + "/answers"), api("/v1/policy/table"),
    lastEvents(id), lastRows(id)]);
  const plan = plans.plans.find((p) => p.name === account.plan);
  const number = (n) => n.toLocaleString("en-US");
  const terms = [];
  for (const [limit, most] of Object.entries(account.overrides)) terms.push(`${limit}: max ${most} (override)`);
  for (const g of account.grants) terms.push(`${g.limit}: +${g.amount} granted until ${when(g.expires_at).utc}`);
  if (account.billing_anchor) terms.push(`billing anchor ${when(account.billing_anchor).utc}`);
  const meters = usage.meters.map((m) => [
    m.limit, meter(m),
    m.max === null ? `${number(m.used)} (unlimited)` : `${number(m.used)} / ${number(m.max)}`,
    m.window_start ? when(m.window_start).utc : "—", resets(m.resets_at)]);
  const told = answers.answers.map((a) => {
    const d = a.decision;
    if (d === null) return [a.title, el("span", { class: "muted", text: "per user" }), a.note, ""];
    return [a.title, el("span", { class: d.allowed ? "granted" : "refused", text: d.allowed ? "allowed" : "refused" }),
      d.message, d.upgrade ? `upgrade to ${plans.plans.find((p) => p.name === d.upgrade)?.title || d.upgrade}` : ""];
  });
  view.replaceChildren(...[
    el("h1", {}, "Account ", el("code", { text: account.id })),
    el("p", { text: `Plan ${plan ? plan.title : account.plan}, ${account.seats} seat${account.seats === 1 ? "" : "s"}.` }),
    terms.length ? el("ul", {}, ...terms.map((t) => el("li", { text: t }))) : null,
    el("h2", { text: "Meters" }),
    table(["limit", "usage", "used", "window start", "resets"], meters),
    el("h2", { text: "What its users are told now" }),
    table(["feature", "now", "message", "upgrade"], told),
    el("h2", { text: "Recent events" }), eventsPart(recent, false),
    el("h2", { text: "Ledger" }), ledgerPart(rows)].filter((part) => part !== null));
}

async function route() {
  status.textContent = "";
  if (!localStorage.getItem(KEY)) { askForKey(""); return; }
  form.hidden = true;
  forget.hidden = false;
  const match = location.hash.match(/^#\/accounts\/(.+)$/);
  try {
    if (match) await accountView(decodeURIComponent(match[1]));
    else await homeView();
    document.getElementById("main").focus();
  } catch (error) {
    if (!(error instanceof Refused && error.status === 401)) {
      status.textContent = error instanceof Refused && error.status === 404
        ? "No such account." : `The service answered: ${error.message}`;
    }
  }
}

function askForKey(message) {
  view.replaceChildren();
  forget.hidden = true;
  form.hidden = false;
  status.textContent = message;
  document.getElementById("key").focus();
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  localStorage.setItem(KEY, document.getElementById("key").value.trim());
  document.getElementById("key").value = "";
  route();
});
forget.addEventListener("click", () => { localStorage.removeItem(KEY); askForKey(""); });
window.addEventListener("hashchange", route);
ticking = setInterval(tick, 1000);
route();
