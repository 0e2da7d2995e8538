// DeepLens browser UI: hash routes, the JSON API, no framework and no build step.
// Every piece of user data reaches the page through textContent (never innerHTML).

const state = { access: null, refresh: sessionStorage.getItem("dl.refresh"), me: null };
const main = document.getElementById("main");
const nav = document.getElementById("nav");
const blobs = new Map(); // image URL -> object URL (thumbnails need the auth header)

// ---- DOM helper ------------------------------------------------------------------------
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
function toast(text) {
  const t = document.getElementById("toast");
  t.textContent = text; t.classList.add("show");
  clearTimeout(toast.timer); toast.timer = setTimeout(() => t.classList.remove("show"), 3500);
}
const fmtBytes = (n) => n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(0)} KB`
  : n < 1073741824 ? `${(n / 1048576).toFixed(1)} MB` : `${(n / 1073741824).toFixed(2)} GB`;
const fmtDate = (s) => s ? new Date(s).toLocaleString() : "";

// ---- API -------------------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}
function setTokens(pair) {
  state.access = pair.accessToken; state.refresh = pair.refreshToken;
  sessionStorage.setItem("dl.refresh", pair.refreshToken);
}
function clearTokens() {
  state.access = null; state.refresh = null; state.me = null;
  sessionStorage.removeItem("dl.refresh");
  for (const url of blobs.values()) URL.revokeObjectURL(url);
  blobs.clear();
}
let refreshing = null;
async function refreshTokens() {
  if (!state.refresh) return false;
  refreshing ??= fetch("/api/auth/refresh", { method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ refreshToken: state.refresh }) })
    .then(async (r) => { if (!r.ok) { clearTokens(); return false; } setTokens(await r.json()); return true; })
    .finally(() => { refreshing = null; });
  return refreshing;
}
async function raw(path, opts = {}, retry = true) {
  const headers = { ...(opts.headers || {}) };
  if (state.access) headers.authorization = `Bearer ${state.access}`;
  const r = await fetch(path, { ...opts, headers });
  if (r.status === 401 && retry && state.refresh && await refreshTokens()) {
    return raw(path, opts, false); // silent refresh, once
  }
  if (!r.ok) {
    let body = {};
    try { body = await r.json(); } catch { /* not JSON */ }
    const e = body.error || {};
    throw new ApiError(r.status, e.code || "error", e.message || r.statusText);
  }
  return r;
}
async function api(path, { method = "GET", json, form } = {}) {
  const opts = { method };
  if (json !== undefined) { opts.body = JSON.stringify(json); opts.headers = { "content-type": "application/json" }; }
  if (form) opts.body = form;
  const r = await raw(path, opts);
  return r.status === 204 || r.status === 202 && !r.headers.get("content-type") ? null : r.json();
}
async function imageUrl(path) {
  if (blobs.has(path)) return blobs.get(path);
  const r = await raw(path);
  const url = URL.createObjectURL(await r.blob());
  blobs.set(path, url);
  return url;
}
function img(path, alt, cls = "thumb") {
  const el = h("img", { class: cls, alt, loading: "lazy" });
  imageUrl(path).then((u) => { el.src = u; }).catch(() => { el.alt = `${alt} (not ready)`; });
  return el;
}

// ---- session ---------------------------------------------------------------------------
async function loadMe() {
  if (!state.access && !(await refreshTokens())) return null;
  try { state.me = await api("/api/auth/me"); } catch { state.me = null; }
  return state.me;
}
const role = () => state.me?.role;
const isAdmin = () => ["Admin", "TenantOwner", "SystemAdmin"].includes(role());
const isSystem = () => role() === "SystemAdmin";

function renderNav() {
  nav.replaceChildren();
  if (!state.me) {
    nav.append(h("a", { href: "#/login" }, "Sign in"), h("a", { href: "#/signup" }, "Create a tenant"));
    return;
  }
  if (state.me.tenant) {
    nav.append(h("a", { href: "#/library" }, "Library"), h("a", { href: "#/upload" }, "Upload"),
      h("a", { href: "#/search" }, "Search"));
  }
  if (isAdmin() && state.me.tenant) nav.append(h("a", { href: "#/admin" }, "Tenant admin"));
  if (isSystem()) nav.append(h("a", { href: "#/system" }, "System admin"), h("a", { href: "#/status" }, "Status"));
  const who = state.me.user ? state.me.user.email : "API key";
  nav.append(h("span", { class: "who" }, `${who} · ${state.me.tenant ? state.me.tenant.name : "platform"} · ${role()}`),
    h("button", { class: "secondary", type: "button", onclick: signOut }, "Sign out"));
}
async function signOut() {
  try { if (state.refresh) await api("/api/auth/logout", { method: "POST", json: { refreshToken: state.refresh } }); } catch { /* already gone */ }
  clearTokens(); location.hash = "#/login"; renderNav();
}
function page(title, ...children) {
  document.title = `${title} · DeepLens`;
  main.replaceChildren(h("h1", {}, title), ...children);
  main.focus({ preventScroll: true });
}
function errorText(e) { return e instanceof ApiError ? `${e.message} (${e.code})` : String(e); }
function field(label, attrs) {
  const id = `f-${attrs.name}`;
  return [h("label", { for: id }, label), h("input", { id, ...attrs })];
}
function formError() { return h("p", { class: "error", role: "alert" }); }

// ---- pages: sign in / sign up ----------------------------------------------------------
function loginPage() {
  const err = formError();
  const form = h("form", { class: "card", onsubmit: async (ev) => {
    ev.preventDefault(); err.textContent = "";
    const d = Object.fromEntries(new FormData(form));
    try {
      setTokens(await api("/api/auth/login", { method: "POST", json: {
        email: d.email, password: d.password, tenantSlug: d.tenantSlug || null } }));
      await loadMe(); renderNav(); location.hash = isSystem() && !state.me.tenant ? "#/system" : "#/library";
    } catch (e) { err.textContent = errorText(e); }
  } },
  ...field("Email", { name: "email", type: "email", required: true, autocomplete: "username" }),
  ...field("Password", { name: "password", type: "password", required: true, autocomplete: "current-password" }),
  ...field("Tenant (only if your email is in several)", { name: "tenantSlug", type: "text" }),
  h("p", {}, h("button", { type: "submit" }, "Sign in")), err,
  h("p", { class: "muted" }, "New here? ", h("a", { href: "#/signup" }, "Create a tenant")));
  page("Sign in", form);
}
function signupPage() {
  const err = formError();
  const form = h("form", { class: "card", onsubmit: async (ev) => {
    ev.preventDefault(); err.textContent = "";
    const d = Object.fromEntries(new FormData(form));
    try {
      const r = await api("/api/tenants", { method: "POST", json: {
        name: d.name, adminEmail: d.email, adminPassword: d.password } });
      setTokens(r); await loadMe(); renderNav(); location.hash = "#/upload";
      toast(`Tenant ${r.tenant.name} created`);
    } catch (e) { err.textContent = errorText(e); }
  } },
  ...field("Organisation name", { name: "name", type: "text", required: true }),
  ...field("Your email", { name: "email", type: "email", required: true, autocomplete: "username" }),
  ...field("Password (8 characters or more)", { name: "password", type: "password", required: true, minlength: 8, autocomplete: "new-password" }),
  h("p", {}, h("button", { type: "submit" }, "Create tenant")), err);
  page("Create a tenant", form);
}

// ---- library, detail -------------------------------------------------------------------
function tile(item, extra) {
  return h("li", {}, h("a", { class: "tile", href: `#/image/${item.id || item.imageId}` },
    img(`/api/images/${item.id || item.imageId}/thumbnail/256`, item.filename),
    h("div", { class: "meta" }, h("div", { class: "name", title: item.filename }, item.filename), extra)));
}
async function libraryPage(params) {
  const pageNo = Number(params.get("page") || 1);
  const data = await api(`/api/images?page=${pageNo}&pageSize=24`);
  const grid = h("ul", { class: "grid", "aria-label": "Images" });
  for (const it of data.items) {
    grid.append(tile(it, [h("div", {}, `${fmtBytes(it.sizeBytes)} · ${fmtDate(it.uploadedAt)}`),
      h("span", { class: `badge ${it.status}` }, it.status)]));
  }
  const pages = Math.max(1, Math.ceil(data.total / data.pageSize));
  page("Library",
    h("p", { class: "muted" }, `${data.total} image${data.total === 1 ? "" : "s"}`),
    data.items.length ? grid : h("p", {}, "No images yet. ", h("a", { href: "#/upload" }, "Upload some")),
    h("div", { class: "pager" },
      pageNo > 1 ? h("a", { href: `#/library?page=${pageNo - 1}` }, "← Newer") : null,
      h("span", {}, `Page ${pageNo} of ${pages}`),
      pageNo < pages ? h("a", { href: `#/library?page=${pageNo + 1}` }, "Older →") : null));
}
async function imagePage(id) {
  const it = await api(`/api/images/${id}`);
  const results = h("div", {});
  const similar = async () => {
    results.replaceChildren(h("p", { class: "muted" }, "Searching…"));
    try {
      const vec = await api(`/api/images/${id}/vector`);
      const hits = await api("/api/images/search", { method: "POST", json: { vector: vec.vector, limit: 12, threshold: 0.5, excludeImageId: id } });
      results.replaceChildren(h("h2", {}, "Similar images"), resultGrid(hits));
    } catch (e) { results.replaceChildren(h("p", { class: "error" }, errorText(e))); }
  };
  const del = async () => {
    if (!confirm(`Delete ${it.filename}?`)) return;
    await api(`/api/images/${id}`, { method: "DELETE" }); toast("Deleted"); location.hash = "#/library";
  };
  page(it.filename, h("div", { class: "detail" },
    h("div", {}, img(`/api/images/${id}/content`, it.filename, "original")),
    h("div", {},
      h("dl", {}, h("dt", {}, "Status"), h("dd", {}, h("span", { class: `badge ${it.status}` }, it.status)),
        it.failureReason ? [h("dt", {}, "Reason"), h("dd", {}, it.failureReason)] : null,
        h("dt", {}, "Size"), h("dd", {}, fmtBytes(it.sizeBytes)),
        h("dt", {}, "Dimensions"), h("dd", {}, it.width ? `${it.width} × ${it.height}` : "—"),
        h("dt", {}, "Type"), h("dd", {}, it.contentType),
        h("dt", {}, "Uploaded"), h("dd", {}, fmtDate(it.uploadedAt)),
        h("dt", {}, "Indexed"), h("dd", {}, fmtDate(it.indexedAt) || "—"),
        h("dt", {}, "Model"), h("dd", {}, it.model || "—")),
      h("p", { class: "row" },
        h("button", { type: "button", onclick: similar, disabled: it.status !== "indexed" }, "Find similar"),
        h("button", { type: "button", class: "danger", onclick: del }, "Delete")))),
  results);
}
function resultGrid(hits) {
  if (!hits.length) return h("p", { id: "no-results" }, "No similar images above the threshold.");
  const grid = h("ul", { class: "grid", "aria-label": "Results", id: "results" });
  for (const r of hits) {
    grid.append(tile(r, [h("div", {}, "similarity ", h("span", { class: "score" }, r.similarity.toFixed(3))),
      matchInfo(r)]));
  }
  return grid;
}

// Geometric verification (search by image): a "verified copy" badge, and where the match is.
function pct(v) { return `${Math.round(v * 100)}%`; }
function regionText(label, g) {
  return h("div", { class: "region" }, `${label} ${pct(g.width)} × ${pct(g.height)} at ${pct(g.x)}, ${pct(g.y)}`);
}
function matchInfo(r) {
  if (r.verified === undefined) return null;
  const out = [r.verified
    ? h("span", { class: "badge verified", title: `${r.inliers} matching keypoints` }, "verified copy")
    : h("span", { class: "badge", title: r.inliers ? `${r.inliers} matching keypoints` : "no geometric match" }, "not verified")];
  if (r.region) out.push(regionText("part of it:", r.region));
  if (r.queryRegion) out.push(regionText("in your image:", r.queryRegion));
  return out;
}

// ---- upload ------------------------------------------------------------------------------
function dropZone(label, multiple, onFiles) {
  const input = h("input", { type: "file", accept: "image/jpeg,image/png,image/webp", multiple, id: `file-${label.replace(/\W/g, "")}`, class: "visually-file" });
  input.addEventListener("change", () => onFiles([...input.files]));
  const zone = h("div", { class: "drop", tabindex: "0", role: "button", "aria-label": label,
    onclick: () => input.click(),
    onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } },
    ondragover: (e) => { e.preventDefault(); zone.classList.add("over"); },
    ondragleave: () => zone.classList.remove("over"),
    ondrop: (e) => { e.preventDefault(); zone.classList.remove("over"); onFiles([...e.dataTransfer.files]); } },
  h("strong", {}, label), h("div", { class: "muted" }, "JPEG, PNG or WebP — drop here, or press Enter to choose"));
  return [zone, h("label", { for: input.id, class: "muted" }, "Or choose files: "), input];
}
function uploadOne(file, row) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    const bar = row.querySelector("progress"); const status = row.querySelector(".st");
    xhr.open("POST", "/api/images/upload");
    if (state.access) xhr.setRequestHeader("authorization", `Bearer ${state.access}`);
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = e.loaded / e.total; };
    xhr.onload = () => {
      let body = {}; try { body = JSON.parse(xhr.responseText); } catch { /* */ }
      if (xhr.status === 202) { bar.value = 1; status.textContent = "uploaded"; resolve(body.imageId); }
      else if (xhr.status === 200 && body.duplicate) { bar.value = 1; status.textContent = "already in your library"; resolve(null); }
      else { status.textContent = `refused: ${body.error?.message || xhr.status}`; status.className = "st error"; resolve(null); }
    };
    xhr.onerror = () => { status.textContent = "network error"; resolve(null); };
    const fd = new FormData(); fd.append("file", file); xhr.send(fd);
  });
}
async function watch(id, row) {
  const status = row.querySelector(".st");
  for (let i = 0; i < 600; i++) {
    try {
      const it = await api(`/api/images/${id}`);
      status.textContent = it.status === "failed" ? `failed: ${it.failureReason}` : it.status;
      status.className = `st badge ${it.status}`;
      if (it.status === "indexed" || it.status === "failed") return;
    } catch { /* transient */ }
    await new Promise((r) => setTimeout(r, 500));
  }
}
function uploadPage() {
  const list = h("ul", { class: "uploads", "aria-label": "Uploads", "aria-live": "polite" });
  const onFiles = async (files) => {
    for (const file of files) {
      const row = h("li", {}, h("span", {}, file.name), h("progress", { max: 1, value: 0, "aria-label": `progress of ${file.name}` }), h("span", { class: "st" }, "queued"));
      row.dataset.filename = file.name;
      list.append(row);
      uploadOne(file, row).then((id) => { if (id) { row.dataset.imageId = id; watch(id, row); } });
    }
  };
  page("Upload", ...dropZone("Drop images to upload", true, onFiles), list);
}

// ---- search -----------------------------------------------------------------------------
function searchPage() {
  const out = h("div", {});
  const limit = h("input", { id: "limit", type: "number", min: 1, max: 100, value: 10 });
  const threshold = h("input", { id: "threshold", type: "number", min: 0, max: 1, step: 0.05, value: 0.7 });
  let last = null;
  const run = async () => {
    if (!last) return;
    out.replaceChildren(h("p", { class: "muted" }, "Searching…"));
    try {
      let hits;
      if (last.file) {
        const fd = new FormData(); fd.append("file", last.file); fd.append("limit", limit.value); fd.append("threshold", threshold.value);
        hits = await api("/api/images/search", { method: "POST", form: fd });
      } else {
        const vec = await api(`/api/images/${last.id}/vector`);
        hits = await api("/api/images/search", { method: "POST", json: { vector: vec.vector, limit: Number(limit.value), threshold: Number(threshold.value) } });
      }
      out.replaceChildren(h("h2", {}, `${hits.length} result${hits.length === 1 ? "" : "s"}`), resultGrid(hits));
    } catch (e) { out.replaceChildren(h("p", { class: "error" }, errorText(e))); }
  };
  const pick = h("select", { id: "pick" }, h("option", { value: "" }, "— or pick one from the library —"));
  api("/api/images?pageSize=100&status=indexed").then((d) => {
    for (const it of d.items) pick.append(h("option", { value: it.id }, it.filename));
  }).catch(() => {});
  pick.addEventListener("change", () => { if (pick.value) { last = { id: pick.value }; run(); } });
  page("Search by image", ...dropZone("Drop a query image", false, (files) => { if (files[0]) { last = { file: files[0] }; run(); } }),
    h("label", { for: "pick" }, "Library image"), pick,
    h("div", { class: "row" }, h("div", {}, h("label", { for: "limit" }, "Limit"), limit),
      h("div", {}, h("label", { for: "threshold" }, "Threshold"), threshold),
      h("button", { type: "button", onclick: run }, "Search again")), out);
}

// ---- tenant admin -----------------------------------------------------------------------
function meter(label, used, limit, fmt = String) {
  // A native <meter>: accessible by default, and no inline style (the CSP forbids it).
  const id = `m-${label.replace(/\W/g, "")}`;
  return h("div", { class: "usage" }, h("label", { for: id }, `${label}: ${fmt(used)} of ${fmt(limit)}`),
    h("meter", { id, min: 0, max: limit, value: Math.min(used, limit), high: limit * 0.9 }));
}
async function adminPage() {
  const tid = state.me.tenant.id;
  const [stats, users, keys] = await Promise.all([api(`/api/tenants/${tid}/analytics`),
    api(`/api/tenants/${tid}/users`), api(`/api/tenants/${tid}/api-keys`)]);
  const usage = h("div", { class: "card" }, h("p", {}, `Tier: ${stats.tier}`),
    meter("Storage", stats.storageUsed, stats.storageLimit, fmtBytes), meter("Users", stats.users, stats.userLimit),
    meter("API calls today", stats.apiCallsToday, stats.apiCallLimit),
    h("p", { class: "muted" }, `${stats.imageCount} images · ${stats.searchesToday} searches today · ${stats.failedImages} failed`));
  const userTable = h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Email"), h("th", {}, "Role"), h("th", {}, "Active"), h("th", {}, ""))),
    h("tbody", {}, users.map((u) => h("tr", {}, h("td", {}, u.email),
      h("td", {}, u.id === state.me.user?.id ? u.role : roleSelect(tid, u)), h("td", {}, u.isActive ? "yes" : "no"),
      h("td", {}, u.isActive && u.id !== state.me.user?.id ? h("button", { class: "secondary", type: "button", onclick: async () => {
        await api(`/api/tenants/${tid}/users/${u.id}`, { method: "DELETE" }); toast("Deactivated"); render(); } }, "Deactivate") : null)))));
  const invErr = formError();
  const invite = h("form", { class: "card", onsubmit: async (ev) => {
    ev.preventDefault(); const d = Object.fromEntries(new FormData(invite));
    try {
      const r = await api(`/api/tenants/${tid}/users`, { method: "POST", json: { email: d.email, role: d.role } });
      invite.replaceChildren(h("p", {}, `Invited ${r.user.email}. Temporary password (shown once):`), h("p", { class: "secret" }, r.temporaryPassword));
    } catch (e) { invErr.textContent = errorText(e); }
  } }, ...field("Email", { name: "email", type: "email", required: true }),
  h("label", { for: "f-role" }, "Role"), h("select", { id: "f-role", name: "role" }, ["User", "Admin", "TenantOwner"].map((r) => h("option", {}, r))),
  h("p", {}, h("button", { type: "submit" }, "Invite")), invErr);
  const secret = h("div", { id: "new-key" });
  const keyForm = h("form", { class: "row", onsubmit: async (ev) => {
    ev.preventDefault(); const d = Object.fromEntries(new FormData(keyForm));
    const r = await api(`/api/tenants/${tid}/api-keys`, { method: "POST", json: { name: d.name } });
    secret.replaceChildren(h("p", {}, `Key “${r.apiKey.name}” — copy it now, it is shown only once:`), h("p", { class: "secret", id: "secret" }, r.key));
    keyList.replaceWith(keyTable(tid, [...keys, r.apiKey]));
  } }, h("div", {}, ...field("New API key name", { name: "name", type: "text", required: true })), h("button", { type: "submit" }, "Create key"));
  const keyList = keyTable(tid, keys);
  page("Tenant admin", h("h2", {}, "Usage"), usage, h("h2", {}, "Users"), userTable, h("h2", {}, "Invite a user"), invite,
    h("h2", {}, "API keys"), keyForm, secret, keyList);
}
function roleSelect(tid, u) {
  const sel = h("select", { "aria-label": `role of ${u.email}` }, ["User", "Admin", "TenantOwner"].map((r) => h("option", { selected: r === u.role }, r)));
  sel.addEventListener("change", async () => {
    try { await api(`/api/tenants/${tid}/users/${u.id}`, { method: "PUT", json: { role: sel.value } }); toast("Role changed"); }
    catch (e) { toast(errorText(e)); sel.value = u.role; }
  });
  return sel;
}
function keyTable(tid, keys) {
  return h("table", { id: "keys" }, h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Prefix"), h("th", {}, "Last used"), h("th", {}, "State"), h("th", {}, ""))),
    h("tbody", {}, keys.map((k) => h("tr", { "data-key": k.name }, h("td", {}, k.name), h("td", {}, k.keyPrefix), h("td", {}, fmtDate(k.lastUsedAt) || "never"),
      h("td", {}, k.revokedAt ? "revoked" : "active"),
      h("td", {}, k.revokedAt ? null : h("button", { class: "danger", type: "button", onclick: async () => {
        await api(`/api/tenants/${tid}/api-keys/${k.id}`, { method: "DELETE" }); toast("Key revoked"); render(); } }, "Revoke"))))));
}

// ---- system admin -----------------------------------------------------------------------
async function systemPage() {
  const [tenants, cols, failed] = await Promise.all([api("/api/tenants?limit=200"), api("/api/collections"), api("/api/admin/failed-events")]);
  page("System admin",
    h("h2", {}, "Tenants"), h("table", {}, h("thead", {}, h("tr", {}, ["Name", "Slug", "Tier", "Status", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, tenants.map((t) => h("tr", {}, h("td", {}, t.name), h("td", {}, t.slug),
        h("td", {}, tierSelect(t)), h("td", {}, t.status),
        h("td", {}, h("button", { class: "secondary", type: "button", onclick: async () => {
          await api(`/api/tenants/${t.id}/${t.status === "Suspended" ? "reactivate" : "suspend"}`, { method: "POST" }); render(); } },
        t.status === "Suspended" ? "Reactivate" : "Suspend")))))),
    h("h2", {}, "Collections"), h("table", {}, h("thead", {}, h("tr", {}, ["Name", "Vectors", "Dimension", "Distance"].map((t) => h("th", {}, t)))),
      h("tbody", {}, cols.map((c) => h("tr", {}, h("td", {}, c.name), h("td", {}, c.vectors), h("td", {}, c.dimension), h("td", {}, c.distance))))),
    h("h2", {}, "Failed events"), failed.length ? h("table", {}, h("thead", {}, h("tr", {}, ["Type", "Subject", "Error", "Received", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, failed.map((f) => h("tr", {}, h("td", {}, f.eventType), h("td", {}, f.subject || ""), h("td", {}, f.error || ""), h("td", {}, fmtDate(f.receivedAt)),
        h("td", {}, h("button", { class: "secondary", type: "button", onclick: async () => {
          await api(`/api/admin/failed-events/${f.id}/replay`, { method: "POST" }); toast("Replayed"); render(); } }, "Replay"))))))
      : h("p", { class: "muted" }, "None."),
    await modelsPanel());
}

// The model lifecycle: active/target/previous model, per-tenant backfill progress, and the
// migrate / cutover / rollback / cleanup actions. Refreshes itself while a backfill runs.
async function modelsPanel() {
  const s = await api("/api/admin/models");
  const p = s.platform, tot = s.totals;
  const act = (what, json = {}) => async () => {
    try { const r = await api(`/api/admin/models/${what}`, { method: "POST", json }); toast(what === "migrate" ? "Migration started" : `${what}: done`); render(); return r; }
    catch (e) { toast(errorText(e)); }
  };
  const target = h("input", { "aria-label": "Target model", placeholder: "efficientnet-lite0:gem:320", size: 32 });
  const eta = (x) => x === null || x === undefined ? "–" : `${x} s`;
  const panel = h("section", { id: "models" },
    h("h2", {}, "Models"),
    h("p", {}, "Active: ", h("strong", { id: "active-model" }, p.activeModel),
      p.targetModel ? [" → migrating to ", h("strong", {}, p.targetModel)] : null,
      p.previousModel ? [" (previous ", p.previousModel, " kept for rollback)"] : null),
    h("ul", { class: "muted" }, s.models.map((m) => h("li", {}, `${m.model}: ${m.dimension}-d, similarity ${m.similarity}`))),
    h("table", {}, h("thead", {}, h("tr", {}, ["Tenant", "Images", "Active", "Other", "Done", "Remaining", "Rate/s", "ETA", "Failures"].map((t) => h("th", {}, t)))),
      h("tbody", {}, s.tenants.map((t) => { const pr = t.progress || {}; return h("tr", {},
        h("th", { scope: "row" }, t.slug), h("td", {}, t.images), h("td", {}, t.activeModel),
        h("td", {}, t.otherModel ? `${t.otherModel} (${t.otherRole})` : "–"),
        h("td", {}, pr.done ?? "–"), h("td", {}, pr.remaining ?? "–"), h("td", {}, pr.ratePerSecond ?? "–"),
        h("td", {}, eta(pr.etaSeconds)), h("td", {}, pr.failures ?? "–")); }))),
    h("p", { id: "models-total" }, `Total: ${tot.done} done, ${tot.remaining} remaining, ${tot.ratePerSecond}/s, ETA ${eta(tot.etaSeconds)}, ${tot.failures} failed`),
    h("form", { class: "row", onsubmit: async (e) => { e.preventDefault(); await act("migrate", { to: target.value.trim() })(); } },
      target, h("button", { type: "submit" }, "Migrate")),
    h("div", { class: "row" },
      h("button", { type: "button", onclick: act("cutover") }, "Cutover"),
      h("button", { class: "secondary", type: "button", onclick: act("rollback") }, "Rollback"),
      h("button", { class: "danger", type: "button", onclick: act("cleanup") }, "Cleanup")));
  clearTimeout(modelsPanel.timer);
  if (tot.remaining > 0) modelsPanel.timer = setTimeout(() => { if (location.hash.startsWith("#/system")) render(); }, 2000);
  return panel;
}
// ---- live status (system admins; the same metrics /metrics exposes) -----------------------
const fmtMs = (v) => v === null || v === undefined ? "–" : v < 1000 ? `${v.toFixed(0)} ms` : `${(v / 1000).toFixed(2)} s`;
const fmtWindow = (s) => s >= 3540 ? "last hour" : `last ${Math.max(1, Math.round(s / 60))} min (since start)`;
function stat(label, value, id, bad = false) {
  return h("div", { class: `stat${bad ? " bad" : ""}`, "data-stat": id }, h("div", { class: "value" }, String(value)), h("div", { class: "label" }, label));
}
async function statusPage() {
  const s = await api("/api/admin/status");
  if (location.hash !== "#/status") return;
  const last = s.lastHour;
  page("Platform status",
    h("p", { class: "muted" }, "Live from the platform's metrics; refreshes every 5 seconds."),
    h("h2", {}, "Backlog"), h("div", { class: "stats" },
      stat("undelivered events", s.backlog.events, "backlog", s.backlog.events > 100),
      stat("oldest waiting", `${s.backlog.oldestSeconds.toFixed(0)} s`, "oldest", s.backlog.oldestSeconds > 300),
      stat("failed events to replay", s.failedEvents, "failed-events", s.failedEvents > 0)),
    h("h2", {}, "Throughput"), h("div", { class: "stats" },
      stat("images indexed / min", s.throughput.indexedPerMinute, "indexed-per-minute"),
      stat("requests / s", s.throughput.requestsPerSecond, "requests-per-second"),
      stat("deliveries / s", s.throughput.deliveriesPerSecond, "deliveries-per-second")),
    h("h2", {}, `Failures, ${fmtWindow(last.windowSeconds)}`), h("div", { class: "stats" },
      stat("pipeline failures", last.pipelineFailures, "pipeline-failures", last.pipelineFailures > 0),
      stat("dead-lettered events", last.deadLettered, "dead-lettered", last.deadLettered > 0),
      stat("server errors (5xx)", last.serverErrors, "server-errors", last.serverErrors > 0),
      stat("retried deliveries", last.retried, "retried"),
      stat("images indexed", last.indexed, "indexed")),
    h("h2", {}, "Pipeline stages"), h("table", { id: "stages" },
      h("thead", {}, h("tr", {}, ["Stage", "Runs", "Failed", "p50", "p95"].map((t) => h("th", {}, t)))),
      h("tbody", {}, s.stages.map((st) => h("tr", { "data-stage": st.stage }, h("td", {}, st.stage), h("td", {}, st.runs), h("td", {}, st.failed),
        h("td", {}, fmtMs(st.p50Ms)), h("td", {}, fmtMs(st.p95Ms)))))),
    h("h2", {}, "Images by status"), h("div", { class: "stats" },
      Object.entries(s.images).map(([k, v]) => stat(k, v, `images-${k}`, k === "failed" && v > 0))));
  clearTimeout(statusPage.timer);
  statusPage.timer = setTimeout(() => { if (location.hash === "#/status") statusPage().catch(() => {}); }, 5000);
}
function tierSelect(t) {
  const sel = h("select", { "aria-label": `tier of ${t.name}` }, ["Free", "Professional", "Enterprise"].map((x) => h("option", { selected: x === t.tier }, x)));
  sel.addEventListener("change", async () => { await api(`/api/tenants/${t.id}`, { method: "PUT", json: { tier: sel.value } }); toast(`${t.name}: ${sel.value}`); });
  return sel;
}

// ---- router -----------------------------------------------------------------------------
async function render() {
  const [path, query] = (location.hash.slice(1) || "/library").split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean);
  const open = ["login", "signup"].includes(parts[0]);
  if (!state.me && !open) { await loadMe(); renderNav(); }
  if (!state.me && !open) { location.hash = "#/login"; return; }
  try {
    switch (parts[0]) {
      case "login": return loginPage();
      case "signup": return signupPage();
      case "upload": return uploadPage();
      case "search": return searchPage();
      case "image": return await imagePage(parts[1]);
      case "admin": return await adminPage();
      case "system": return await systemPage();
      case "status": return await statusPage();
      default: return state.me.tenant ? await libraryPage(params) : await systemPage();
    }
  } catch (e) {
    page("Something went wrong", h("p", { class: "error", role: "alert" }, errorText(e)));
  }
}
window.addEventListener("hashchange", render);
loadMe().then(() => { renderNav(); render(); });
