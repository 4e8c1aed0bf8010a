// Rapport's console: one page, routed by the URL's hash, reading the HTTP APIs with the
// access token kept in sessionStorage (gone when the tab closes). Every value from the API
// goes into the page as text (textContent), never as markup.
"use strict";

const TOKEN_KEY = "rapport.token";
const FUNNEL = ["visitor", "lead", "customer", "repeat", "loyal"];
const main = document.getElementById("main");

// --- helpers -------------------------------------------------------------------------------
function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}
const text = v => v === null || v === undefined ? "—" : typeof v === "object" ? JSON.stringify(v) : String(v);
const when = v => v ? new Date(v).toLocaleString() : "—";
const card = (title, ...body) => h("section", { class: "card" }, title ? h("h2", {}, title) : null, ...body);
const table = (heads, rows) => h("table", {}, h("thead", {}, h("tr", {}, heads.map(x => h("th", {}, x)))),
                                 h("tbody", {}, rows));
const stageBadge = s => s ? h("span", { class: `badge stage-${s}`, "data-stage": s }, s.replace("_", " ")) : "—";
const enc = encodeURIComponent;

class ApiError extends Error {
  constructor(status, error) {
    super(error?.message || `HTTP ${status}`);
    this.status = status;
    this.field = error?.field;
  }
}

async function api(path, { method = "GET", body } = {}) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY)}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (response.status === 401) {
    signOut("The access token was refused: sign in again.");
    throw new ApiError(401, data?.error);
  }
  if (!response.ok) throw new ApiError(response.status, data?.error);
  return data;
}

function show(...nodes) {
  main.replaceChildren(...nodes);
}

function failed(error) {
  show(card("Something went wrong", h("p", { class: "error" }, error.message)));
}

// --- sign in -------------------------------------------------------------------------------
function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  signIn(message);
}

function signIn(message) {
  document.getElementById("nav").hidden = true;
  const input = h("input", { id: "token", class: "wide", type: "password", placeholder: "rpt_…", autocomplete: "off" });
  const note = h("p", { class: "error", id: "signin-error" }, message || "");
  const form = h("form", { class: "card signin", onsubmit: async event => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    try {
      await api("/v1/segments");  // any read proves the token
      document.getElementById("nav").hidden = false;
      if (!location.hash || location.hash === "#/signin") location.hash = "#/profiles";
      else route();
    } catch (error) {
      if (error.status !== 401) note.textContent = error.status === 403
        ? "This token can't read segments; the console needs profiles:read and segments:read (admin for sources)."
        : error.message;
    }
  } },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "Paste an access token. `rapport up` prints the admin token on start; ",
      "`rapport token create NAME --scope ...` makes others. It is kept in this tab only."),
    h("div", { class: "field" }, input), note, h("button", { type: "submit", id: "sign-in" }, "Sign in"));
  show(form);
  input.focus();
}

// --- profiles ------------------------------------------------------------------------------
async function profilesPage(params) {
  const q = params.get("q") || "";
  const input = h("input", { id: "search", class: "wide", value: q, placeholder: "email, user id, phone, anonymous id, handle…" });
  const results = h("div", { id: "results" });
  const form = h("form", { class: "row", onsubmit: event => {
    event.preventDefault();
    location.hash = `#/profiles?q=${enc(input.value.trim())}`;
  } }, h("div", { class: "grow" }, input), h("button", { type: "submit" }, "Search"));
  show(h("h1", {}, "Profiles"), card(null, form, results));
  if (!q) {
    results.append(h("p", { class: "muted" }, "Search by any identifier, or the start of one (e.g. an email's first letters)."));
    return;
  }
  const found = (await api(`/v1/profiles/search?q=${enc(q)}`)).profiles;
  results.append(found.length ? table(["Name", "Email", "Matched", "Stage", "Last seen"], found.map(p =>
    h("tr", { class: "result" },
      h("td", {}, h("a", { href: `#/profile/${enc(p.profile_id)}`, class: "profile-link" }, p.name || p.profile_id)),
      h("td", {}, text(p.email)),
      h("td", {}, p.matched.map(m => h("div", { class: "mono" }, `${m.type}: ${m.value}`))),
      h("td", {}, stageBadge(p.lifecycle_stage)), h("td", {}, when(p.last_seen)))))
    : h("p", { class: "muted", id: "no-results" }, `No profile has an identifier starting with “${q}”.`));
}

async function profilePage(id) {
  const [profile, history] = await Promise.all([
    api(`/v1/profiles/${enc(id)}?provenance=true`), api(`/v1/profiles/${enc(id)}/merges`)]);
  const pid = profile.profile_id;
  const traits = profile.traits;
  const name = traits.name?.value || traits.email?.value || pid;
  const timeline = h("ol", { class: "timeline", id: "timeline" });
  const more = h("button", { class: "secondary", type: "button" }, "Older events");
  let cursor = null;
  async function loadEvents() {
    const page = await api(`/v1/profiles/${enc(pid)}/events?limit=25${cursor ? `&next=${enc(cursor)}` : ""}`);
    for (const e of page.events) {
      timeline.append(h("li", { class: "event" }, h("strong", {}, e.event || e.type), " ",
        h("span", { class: "muted" }, `${when(e.timestamp)} · ${e.channel || "?"} · ${e.source_id || ""}`),
        Object.keys(e.properties || {}).length ? h("details", {}, h("summary", {}, "properties"),
          h("pre", {}, JSON.stringify(e.properties, null, 2))) : null));
    }
    cursor = page.next;
    more.hidden = !cursor;
  }
  more.addEventListener("click", loadEvents);

  const unmerge = identifier => h("button", { class: "danger", type: "button", title: "split this identifier off the profile",
    onclick: async () => {
      if (!confirm(`Split ${identifier.type} ${identifier.value} off this profile? Its events are resolved again.`)) return;
      try {
        await api(`/v1/profiles/${enc(pid)}/unmerge`, { method: "POST",
          body: { type: identifier.type, value: identifier.value, action: "remove", reason: "console" } });
        route();
      } catch (error) { alert(error.message); }
    } }, "Unmerge");
  const stage = profile.lifecycle_stage;
  // seg_event_* are the counters segments' event conditions compile to: internal, left out
  const computed = Object.entries(profile.computed_traits).filter(([k, v]) => v !== null && !k.startsWith("seg_event_"));
  show(
    h("h1", { id: "profile-name" }, name, " ", stageBadge(stage?.stage)),
    h("p", { class: "muted" }, h("span", { class: "mono", id: "profile-id" }, pid),
      ` · first seen ${when(profile.first_seen)} · last seen ${when(profile.last_seen)} · ${profile.event_count} events`,
      stage ? ` · ${stage.stage} since ${when(stage.since)} (${stage.why})` : ""),
    h("div", { class: "grid" },
      card("Identities", table(["Type", "Value", ""], profile.identities.map(i =>
        h("tr", { class: "identity" }, h("td", {}, i.type), h("td", { class: "mono" }, i.value),
          h("td", {}, profile.identities.length > 1 ? unmerge(i) : null))))),
      card("Traits", table(["Trait", "Value", "Set"], Object.entries(traits).map(([k, t]) =>
        h("tr", {}, h("td", {}, k), h("td", {}, text(t.value)),
          h("td", { class: "muted", title: `message ${t.message_id}` }, `${when(t.updated_at)} by ${t.source_id || "?"}`))))),
      card("Computed traits", table(["Name", "Value"], computed.map(([k, v]) =>
        h("tr", {}, h("td", {}, k), h("td", { class: "mono" }, text(v)))))),
      card("Segments", profile.segments.length ? table(["Segment", "Entered"], profile.segments.map(s =>
        h("tr", {}, h("td", {}, h("a", { href: `#/segment/${enc(s.segment)}` }, s.segment)), h("td", {}, when(s.entered_at)))))
        : h("p", { class: "muted" }, "In no segment.")),
      card("Consent", Object.keys(profile.consent).length ? table(["Purpose", "Given", "When", "Source"],
        Object.entries(profile.consent).map(([k, c]) => h("tr", {}, h("td", {}, k),
          h("td", { class: c.given ? "ok" : "error" }, c.given ? "yes" : "no"), h("td", {}, when(c.at)), h("td", {}, text(c.source_id)))))
        : h("p", { class: "muted" }, "No consent recorded.")),
      card("Merge history",
        history.merges.length ? table(["When", "Absorbed", "Evidence"], history.merges.map(m =>
          h("tr", { class: "merge" }, h("td", {}, when(m.merged_at)), h("td", { class: "mono" }, m.absorbed),
            h("td", { class: "mono" }, (m.identifiers || []).map(i => `${i.type}: ${i.value}`).join(", "))))) : h("p", { class: "muted" }, "No merges."),
        history.splits.map(s => h("p", { class: "muted" }, `Split ${when(s.split_at)}: ${text(s.removed)} (${s.cause})`)),
        history.refused_merges.map(r => h("p", { class: "muted" }, `Refused merge: ${r.reason} (dropped ${r.dropped.type} ${r.dropped.value})`)))),
    card("Timeline (all sources, newest first)", timeline, more));
  await loadEvents();
}

// --- segments ------------------------------------------------------------------------------
async function segmentsPage() {
  const segments = await api("/v1/segments");
  show(h("div", { class: "row" }, h("h1", { class: "grow" }, "Segments"),
         h("a", { href: "#/segment-new" }, h("button", { type: "button", id: "new-segment" }, "New segment"))),
    card(null, segments.length ? table(["Segment", "Definition", h("span", { class: "num" }, "Members")], segments.map(s =>
      h("tr", { class: "segment", dataset: { key: s.key } },
        h("td", {}, h("a", { href: `#/segment/${enc(s.key)}` }, s.name), h("div", { class: "muted mono" }, s.key)),
        h("td", { class: "mono" }, s.text || JSON.stringify(s.condition)),
        h("td", { class: "num size" }, s.size.toLocaleString()))))
      : h("p", { class: "muted" }, "No segments yet.")));
}

async function segmentPage(key) {
  const [segment, history, members] = await Promise.all([api(`/v1/segments/${enc(key)}`),
    api(`/v1/segments/${enc(key)}/sizes`), api(`/v1/segments/${enc(key)}/members?limit=10`)]);
  const backfill = segment.backfill || {};
  show(h("div", { class: "row" }, h("h1", { class: "grow" }, segment.name),
         h("a", { href: `#/segment-edit/${enc(key)}` }, h("button", { type: "button", class: "secondary" }, "Edit"))),
    card(null, h("p", { class: "mono", id: "segment-text" }, segment.text || JSON.stringify(segment.condition)),
      h("p", {}, h("strong", { id: "segment-size" }, segment.size.toLocaleString()), " members",
        segment.requires_consent ? ` (only with ${segment.requires_consent} consent)` : "",
        backfill.state && backfill.state !== "done" ? ` · backfill ${backfill.state} ${backfill.done}/${backfill.total}` : "")),
    card("Size over time", Charts.sizes(history.sizes)),
    card("Members (first 10)", members.members.length ? h("ul", {}, members.members.map(id =>
      h("li", {}, h("a", { href: `#/profile/${enc(id)}`, class: "mono" }, id)))) : h("p", { class: "muted" }, "None.")));
}

async function segmentEditor(key) {
  const existing = key ? await api(`/v1/segments/${enc(key)}`) : null;
  const keyInput = h("input", { id: "segment-key", class: "wide", value: existing?.key || "", disabled: !!existing,
                                placeholder: "e.g. tea-lovers (a-z, 0-9, - and _)" });
  const nameInput = h("input", { id: "segment-name", class: "wide", value: existing?.name || "" });
  const consentInput = h("input", { id: "segment-consent", value: existing?.requires_consent || "", placeholder: "e.g. email" });
  const textInput = h("textarea", { id: "segment-text", spellcheck: "false",
                                    placeholder: 'orders >= 2 and consent.email and not stage = "churned"' },
                      existing?.text || "");
  const status = h("p", { id: "preview-status", class: "muted" }, "Type a condition to see who it holds.");
  const sample = h("div", { id: "preview-sample" });
  const saveError = h("p", { class: "error", id: "save-error" });
  let timer, asked = 0;
  const definition = () => ({ text: textInput.value, ...(consentInput.value.trim() ? { requires_consent: consentInput.value.trim() } : {}) });

  async function preview() {
    const mine = ++asked;  // answers to older keystrokes are dropped
    if (!textInput.value.trim()) { status.textContent = "Type a condition to see who it holds."; sample.replaceChildren(); return; }
    try {
      const result = await api("/v1/segments/preview?sample=5", { method: "POST", body: definition() });
      if (mine !== asked) return;
      status.className = "ok";
      status.replaceChildren("Valid: ", h("strong", { id: "preview-count" }, result.count.toLocaleString()),
        " profiles match now", result.text ? h("span", { class: "muted mono" }, ` · ${result.text}`) : "");
      sample.replaceChildren(...result.sample.map(p => h("div", { class: "sample" },
        h("a", { href: `#/profile/${enc(p.profile_id)}`, class: "mono" }, p.traits?.name || p.profile_id),
        h("span", { class: "muted" }, p.traits?.email ? ` ${p.traits.email}` : ""))));
    } catch (error) {
      if (mine !== asked) return;
      status.className = "error";
      status.replaceChildren(h("span", { id: "preview-error" }, error.message), error.field ? ` (at ${error.field})` : "");
      sample.replaceChildren();
    }
  }
  const later = () => { clearTimeout(timer); timer = setTimeout(preview, 250); };
  textInput.addEventListener("input", later);
  consentInput.addEventListener("input", later);

  async function save(event) {
    event.preventDefault();
    const body = { key: keyInput.value.trim(), name: nameInput.value.trim() || keyInput.value.trim(), ...definition() };
    try {
      const saved = existing ? await api(`/v1/segments/${enc(existing.key)}`, { method: "PUT", body })
                             : await api("/v1/segments", { method: "POST", body });
      location.hash = `#/segment/${enc(saved.key)}`;
    } catch (error) {
      saveError.textContent = error.field ? `${error.message} (at ${error.field})` : error.message;
    }
  }
  show(h("h1", {}, existing ? `Edit ${existing.name}` : "New segment"),
    h("form", { class: "card", onsubmit: save },
      h("div", { class: "field" }, h("label", { for: "segment-key" }, "Key"), keyInput),
      h("div", { class: "field" }, h("label", { for: "segment-name" }, "Name"), nameInput),
      h("div", { class: "field" }, h("label", { for: "segment-text" }, "Condition"), textInput,
        h("p", { class: "muted" }, 'e.g. clv_historic >= 300 · traits.address.country = "DE" · did "Order Completed" at least 2 times within 90d · stage = "loyal" · consent.email · in_segment("vip")')),
      h("div", { class: "field" }, h("label", { for: "segment-consent" }, "Requires consent (optional)"), consentInput),
      status, sample, saveError,
      h("div", { class: "row" }, h("button", { type: "submit", id: "save-segment" }, "Save"),
        h("a", { href: existing ? `#/segment/${enc(existing.key)}` : "#/segments" }, "Cancel"))));
  if (existing) preview();
}

// --- lifecycle -----------------------------------------------------------------------------
async function lifecyclePage() {
  const data = await api("/v1/lifecycle");
  // profiles that ever reached each funnel stage: each step's `reached`, and the last one's `converted`
  const reached = Object.fromEntries(data.funnel.map(f => [f.from, f.reached]));
  const last = data.funnel[data.funnel.length - 1];
  reached[last.to] = last.converted;
  const rate = Object.fromEntries(data.funnel.map(f => [f.from, f.rate]));
  const funnelRows = FUNNEL.map(stage => ({ label: stage, value: reached[stage] || 0,
    note: rate[stage] === undefined ? "" : rate[stage] === null ? "no conversion yet"
      : `${(rate[stage] * 100).toFixed(1)}% went on to ${FUNNEL[FUNNEL.indexOf(stage) + 1]}`,
    data: { stage, count: reached[stage] || 0 } }));
  const nowRows = data.stages.map(s => ({ label: s.stage.replace("_", " "), value: s.profiles,
    cls: ["at_risk", "churned"].includes(s.stage) ? "lapsed" : "", data: { stage: s.stage, count: s.profiles } }));
  show(h("h1", {}, "Lifecycle"),
    card("Funnel: profiles that reached each stage", h("div", { id: "funnel-chart" }, Charts.bars(funnelRows, { barHeight: 28, gap: 22 }))),
    h("div", { class: "grid" },
      card("Where profiles are now", h("div", { id: "stage-chart" }, Charts.bars(nowRows, { width: 460, barHeight: 20, gap: 8, labelWidth: 80 }))),
      card("Time in stage", table(["Stage", h("span", { class: "num" }, "Now"), h("span", { class: "num" }, "Median days in stage")],
        data.stages.map(s => h("tr", {}, h("td", {}, stageBadge(s.stage)), h("td", { class: "num" }, s.profiles.toLocaleString()),
          h("td", { class: "num" }, s.median_days_in_stage === null ? "—" : s.median_days_in_stage.toFixed(1))))))));
}

// --- sources -------------------------------------------------------------------------------
async function sourcesPage() {
  const { sources } = await api("/v1/sources");
  const rejected = await Promise.all(sources.map(s => api(`/v1/sources/${enc(s.id)}/rejected?limit=20`)));
  show(h("h1", {}, "Sources"),
    card("Write keys", table(["Source", "Kind", "State", "Plan", "Write key", h("span", { class: "num" }, "Duplicates")],
      sources.map(s => h("tr", { class: "source", dataset: { id: s.id } }, h("td", {}, s.name, h("div", { class: "muted mono" }, s.id)),
        h("td", {}, s.kind), h("td", { class: s.enabled ? "ok" : "error" }, s.enabled ? "enabled" : "disabled"),
        h("td", {}, s.plan_mode), h("td", { class: "mono" }, s.write_key), h("td", { class: "num" }, s.duplicates))))),
    ...sources.map((s, i) => card(`Recent rejected events: ${s.name}`, rejected[i].rejected.length
      ? table(["Received", "Reason", "Payload"], rejected[i].rejected.map(r => h("tr", { class: "rejected" },
          h("td", {}, when(r.received_at)),
          h("td", {}, h("strong", {}, r.reason?.code || "?"), " ", r.reason?.message || "",
            (r.violations || []).map(v => h("div", { class: "muted" }, `${v.type} ${v.field}: ${v.description}`))),
          h("td", {}, h("details", {}, h("summary", {}, r.kind || "payload"), h("pre", {}, JSON.stringify(r.payload, null, 2)))))))
      : h("p", { class: "muted" }, "None recently."))));
}

// --- routing -------------------------------------------------------------------------------
const ROUTES = [
  [/^#\/profiles(?:\?(.*))?$/, m => profilesPage(new URLSearchParams(m[1] || "")), "profiles"],
  [/^#\/profile\/(.+)$/, m => profilePage(decodeURIComponent(m[1])), "profiles"],
  [/^#\/segments$/, () => segmentsPage(), "segments"],
  [/^#\/segment-new$/, () => segmentEditor(null), "segments"],
  [/^#\/segment-edit\/(.+)$/, m => segmentEditor(decodeURIComponent(m[1])), "segments"],
  [/^#\/segment\/(.+)$/, m => segmentPage(decodeURIComponent(m[1])), "segments"],
  [/^#\/lifecycle$/, () => lifecyclePage(), "lifecycle"],
  [/^#\/sources$/, () => sourcesPage(), "sources"],
];

async function route() {
  if (!sessionStorage.getItem(TOKEN_KEY)) return signIn();
  document.getElementById("nav").hidden = false;
  const hash = location.hash || "#/profiles";
  const [pattern, page, section] = ROUTES.find(([p]) => p.test(hash)) || ROUTES[0];
  document.querySelectorAll("nav a").forEach(a => a.classList.toggle("active", a.dataset.section === section));
  main.setAttribute("aria-busy", "true");
  try {
    await page(hash.match(pattern) || []);
  } catch (error) {
    if (error.status !== 401) failed(error);
  } finally {
    main.removeAttribute("aria-busy");
  }
}

document.getElementById("sign-out").addEventListener("click", () => signOut("Signed out."));
window.addEventListener("hashchange", route);
route();
