// Routes (with their plugins), upstreams (targets with live health) and consumers (their keys): create, edit and
// delete, each through PUT / DELETE /{routes|upstreams|consumers}/{name}.
import { enc, get, put, del } from "./api.js";
import { act, confirmDialog, field, go, h, page, select, table } from "./ui.js";
import { onLeave } from "./app.js";

const BALANCERS = ["round-robin", "least-connections", "consistent-hash", "random-two-choices"];

function describe(integration) {
  switch (integration.type) {
    case "lambda": return `lambda → ${integration.function}`;
    case "http": return `http → ${integration.upstream}${integration.path ? " " + integration.path : ""}`;
    case "mock": return `mock → ${integration.status ?? 200}`;
    case "aggregate": return `aggregate (${(integration.backends || []).length} backends)`;
    default: return integration.type;
  }
}

function jsonArea(value, rows = 4) {
  const area = h("textarea", { rows, cols: 60, spellcheck: "false" });
  area.value = value === undefined ? "" : JSON.stringify(value, null, 2);
  return area;
}

/** The JSON in a textarea, or a refusal naming the field (shown like the API's errors). */
function parseJson(area, label, fallback) {
  const text = area.value.trim();
  if (!text) return fallback;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw Object.assign(new Error(`${label}: not JSON (${err.message})`), { path: "" });
  }
}

function editDelete(kind, name, onEdit) {
  const edit = h("button", { type: "button", "aria-label": `Edit ${name}` }, "Edit");
  edit.addEventListener("click", onEdit);
  const remove = h("button", { type: "button", class: "danger", "aria-label": `Delete ${name}` }, "Delete");
  remove.addEventListener("click", async () => {
    if (!(await confirmDialog(`Delete ${kind.slice(0, -1)} ${name}?`, "Delete"))) return;
    if (await act(remove, () => del(`/${kind}/${enc(name)}`))) go(`#/${kind}`, `Deleted ${name}.`);
  });
  return h("td", {}, h("div", { class: "actions" }, edit, remove));
}

// -- routes ------------------------------------------------------------------------------------------------------

async function routes() {
  const [served, config] = await Promise.all([get("/routes"), get("/config")]);
  const named = new Map((config.routes || []).filter((r) => r.name).map((r) => [r.name, r]));
  const name = h("input", { required: true, pattern: "[A-Za-z0-9_.~-]{1,128}", autocomplete: "off" });
  const path = h("input", { required: true, autocomplete: "off", value: "/" });
  const methods = h("input", { autocomplete: "off", value: "ANY" });
  const kind = select([["http", "HTTP (an upstream)"], ["lambda", "Lambda proxy (a function)"], ["mock", "Mock"]], "mock");
  const target = h("input", { autocomplete: "off" });
  const plugins = jsonArea({}, 5);
  let base = {};  // the route being edited: fields the form does not show are kept
  const fill = (route) => {
    base = route;
    name.value = route.name;
    path.value = route.path;
    methods.value = (route.methods || ["ANY"]).join(", ");
    kind.value = route.integration.type;
    const i = route.integration;
    target.value = i.type === "http" ? i.upstream : i.type === "lambda" ? i.function : JSON.stringify(i.body ?? "");
    plugins.value = JSON.stringify(route.plugins || {}, null, 2);
    name.focus();
  };
  const save = h("button", { type: "submit", class: "primary" }, "Save route");
  const form = h("form", { class: "card", "aria-labelledby": "route-form" },
    h("h2", { id: "route-form" }, "Create or replace a route"),
    h("div", { class: "row" }, field("Route name", name), field("Path", path, "/users/{id}"),
      field("Methods", methods, "Comma-separated: GET, POST, or ANY")),
    h("div", { class: "row" }, field("Integration", kind),
      field("Target", target, "The upstream's name, the function's name, or the mock's body (JSON or text)")),
    field("Plugins", plugins, 'JSON: {"key-auth": {}, "rate-limit": {"rate": 10, "burst": 20}}'),
    h("div", { class: "actions" }, save));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const n = name.value.trim();
    const done = await act(save, () => {
      let integration;
      if (kind.value === "http") integration = { ...(base.integration?.type === "http" ? base.integration : {}), type: "http", upstream: target.value.trim() };
      else if (kind.value === "lambda") integration = { ...(base.integration?.type === "lambda" ? base.integration : {}), type: "lambda", function: target.value.trim() };
      else {
        let body = target.value;
        try { body = JSON.parse(body); } catch { /* text */ }
        integration = { ...(base.integration?.type === "mock" ? base.integration : {}), type: "mock", body };
      }
      const route = { ...(base.name === n ? base : {}), name: n, path: path.value.trim(),
        methods: methods.value.split(",").map((m) => m.trim().toUpperCase()).filter(Boolean),
        integration, plugins: parseJson(plugins, "Plugins", {}) };
      // An edit is written only over what it was read from (If-Match); a new route over whatever serves.
      return put(`/routes/${enc(n)}`, route, `route ${n} from the console`, base.name === n ? config.etag : undefined);
    });
    if (done) go("#/routes", `Route ${n} saved (deployment ${done.deployment}).`);
  });
  const rows = served.map((r) => h("tr", {},
    h("td", {}, r.name || "—"), h("td", {}, r.methods.join(", ")), h("td", { class: "url" }, r.path),
    h("td", {}, describe(r.integration)), h("td", {}, r.api ? `${r.api} · ${r.stage}` : "—"),
    h("td", {}, r.plugins.length ? r.plugins.join(", ") : "—"),
    named.has(r.name) && !r.api ? editDelete("routes", r.name, () => fill(named.get(r.name))) : h("td", {})));
  page("Routes", h("section", { class: "card" },
    table("Routes as served (an API's route once per stage)", ["Name", "Methods", "Path", "Integration", "API · stage", "Plugins", ""], rows)),
    form);
}

// -- upstreams ---------------------------------------------------------------------------------------------------

function healthBadge(t) {
  if (t.health === "per worker") return h("span", { class: "badge" }, "per worker");
  const parts = [h("span", { class: `badge ${t.in_rotation ? "ok" : "bad"}` }, t.in_rotation ? "in rotation" : "out of rotation")];
  if (t.healthy === false) parts.push(" ", h("span", { class: "badge bad" }, "failing checks"));
  if (t.ejected_for) parts.push(" ", h("span", { class: "badge warn" }, `ejected ${Number(t.ejected_for).toFixed(1)} s`));
  if (t.breaker) parts.push(" ", h("span", { class: `badge ${t.breaker === "closed" ? "ok" : t.breaker === "open" ? "bad" : "warn"}` }, `breaker ${t.breaker}`));
  return parts;
}

function targetRows(live) {
  return Object.entries(live).flatMap(([n, u]) => u.targets.map((t, i) => h("tr", {},
    h("td", {}, i === 0 ? n : ""), h("td", { class: "url" }, t.url), h("td", { class: "health" }, healthBadge(t)),
    h("td", {}, t.ejections ?? "—"), h("td", {}, t.breaker_opened ?? "—"),
    h("td", {}, t.busy === undefined ? "—" : `${t.busy} busy · ${t.idle} idle`))));
}

async function upstreams() {
  const [live, config] = await Promise.all([get("/upstreams"), get("/config")]);
  const items = config.upstreams || {};
  const name = h("input", { required: true, pattern: "[A-Za-z0-9_.~-]{1,128}", autocomplete: "off" });
  const targets = h("textarea", { rows: 3, cols: 50, placeholder: "http://127.0.0.1:8080" });
  const balancer = select(BALANCERS, "round-robin");
  let base = {};
  const save = h("button", { type: "submit", class: "primary" }, "Save upstream");
  const form = h("form", { class: "card", "aria-labelledby": "upstream-form" },
    h("h2", { id: "upstream-form" }, "Create or replace an upstream"),
    h("div", { class: "row" }, field("Upstream name", name), field("Balancer", balancer)),
    field("Targets", targets, "One a line: a URL, optionally followed by a weight (http://10.0.0.2:8080 5)"),
    h("div", { class: "actions" }, save));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const n = name.value.trim();
    const list = targets.value.split("\n").map((l) => l.trim()).filter(Boolean).map((l) => {
      const [url, weight] = l.split(/\s+/);
      return weight ? { url, weight: Number(weight) } : url;
    });
    const body = { ...(base.name === n ? base.item : {}), targets: list, balancer: balancer.value };
    const done = await act(save, () => put(`/upstreams/${enc(n)}`, body, `upstream ${n} from the console`,
      base.name === n ? config.etag : undefined));
    if (done) go("#/upstreams", `Upstream ${n} saved (deployment ${done.deployment}).`);
  });
  const fill = (n) => {
    const item = items[n];
    base = { name: n, item };
    name.value = n;
    balancer.value = item.balancer || "round-robin";
    targets.value = item.targets.map((t) => (typeof t === "string" ? t : `${t.url}${t.weight ? " " + t.weight : ""}`)).join("\n");
    name.focus();
  };
  const summary = h("tbody", {}, Object.keys(items).map((n) => h("tr", {}, h("td", {}, n),
    h("td", {}, items[n].balancer || "round-robin"), h("td", {}, String(items[n].targets.length)), editDelete("upstreams", n, () => fill(n)))));
  const liveTable = table("Targets, live (refreshed every 2 seconds)", ["Upstream", "Target", "Health", "Ejections", "Breaker opened", "Pool"], targetRows(live));
  liveTable.id = "live-targets";
  page("Upstreams",
    h("section", { class: "card" }, h("table", {}, h("caption", {}, "Upstreams"),
      h("thead", {}, h("tr", {}, ["Name", "Balancer", "Targets", ""].map((t) => h("th", { scope: "col" }, t)))), summary)),
    h("section", { class: "card" }, liveTable), form);
  const timer = setInterval(async () => {
    try {
      const now = await get("/upstreams");
      const body = liveTable.querySelector("tbody");
      const rows = targetRows(now);
      if (rows.length) body.replaceChildren(...rows);
    } catch { /* the next tick tries again */ }
  }, 2000);
  onLeave(() => clearInterval(timer));
}

// -- consumers ---------------------------------------------------------------------------------------------------

async function consumers() {
  const config = await get("/config");
  const items = config.consumers || {};
  const name = h("input", { required: true, pattern: "[A-Za-z0-9_.~-]{1,128}", autocomplete: "off" });
  const groups = h("input", { autocomplete: "off" });
  const key = h("input", { autocomplete: "off", type: "password" });
  const creds = jsonArea({}, 4);
  let base = {};
  const save = h("button", { type: "submit", class: "primary" }, "Save consumer");
  const form = h("form", { class: "card", "aria-labelledby": "consumer-form" },
    h("h2", { id: "consumer-form" }, "Create or replace a consumer"),
    h("div", { class: "row" }, field("Consumer name", name), field("Groups", groups, "Comma-separated (for acl)")),
    field("New API key (key-auth)", key, "Added to the consumer's key-auth credentials; leave empty to keep them as they are"),
    field("Credentials", creds, 'JSON, per plugin: {"basic-auth": [{"username": "bob", "password": "..."}]}. Secrets show as ******** and are kept when sent back so.'),
    h("div", { class: "actions" }, save));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const n = name.value.trim();
    const done = await act(save, () => {
      const credentials = parseJson(creds, "Credentials", {});
      if (key.value) credentials["key-auth"] = [...(credentials["key-auth"] || []), { key: key.value }];
      const body = { ...(base.name === n ? base.item : {}), credentials,
        groups: groups.value.split(",").map((g) => g.trim()).filter(Boolean) };
      return put(`/consumers/${enc(n)}`, body, `consumer ${n} from the console`, base.name === n ? config.etag : undefined);
    });
    if (done) go("#/consumers", `Consumer ${n} saved (deployment ${done.deployment}).`);
  });
  const fill = (n) => {
    const item = items[n];
    base = { name: n, item };
    name.value = n;
    groups.value = (item.groups || []).join(", ");
    key.value = "";
    creds.value = JSON.stringify(item.credentials || {}, null, 2);
    name.focus();
  };
  const rows = Object.entries(items).map(([n, c]) => h("tr", {}, h("td", {}, n), h("td", {}, (c.groups || []).join(", ") || "—"),
    h("td", {}, Object.entries(c.credentials || {}).map(([p, list]) => h("div", {}, `${p}: ${list.length} `,
      list.map((cr) => h("code", {}, cr.key || cr.username || cr.key_sha256 || Object.values(cr)[0]))))),
    h("td", {}, c.usage_plan || "—"), editDelete("consumers", n, () => fill(n))));
  page("Consumers", h("section", { class: "card" }, table("Consumers", ["Name", "Groups", "Credentials (keys masked)", "Usage plan", ""], rows)), form);
}

export function show(kind) {
  return { routes, upstreams, consumers }[kind]();
}
