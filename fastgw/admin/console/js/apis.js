// APIs: create a REST or HTTP API, its resources and methods, the integration, deploy to a stage, invoke URLs.
import { enc, get, info, put, del } from "./api.js";
import { act, confirmDialog, copyText, field, go, h, page, select, showOk, table } from "./ui.js";


const METHODS = ["ANY", "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

export function invokeUrl(api, stage) {
  // A gateway listening on every address is reached at the address the console was opened with.
  const base = info.traffic.replace(/\/$/, "").replace(/\/\/(0\.0\.0\.0|\[::\])(?=:|$)/, `//${location.hostname}`);
  if (stage === "$default" || api.stage_prefix === false) return `${base}/`;
  return `${base}/${stage}`;
}

function describe(integration) {
  switch (integration.type) {
    case "lambda": return `Lambda proxy → ${integration.function}`;
    case "http": return `HTTP → ${integration.upstream}${integration.path ? " " + integration.path : ""}`;
    case "mock": return `Mock → ${integration.status ?? 200}`;
    default: return integration.type;
  }
}

export async function list() {
  const config = await get("/config");
  const drafts = await get("/console/api/drafts");
  const apis = { ...drafts, ...(config.apis || {}) };
  const name = h("input", { required: true, pattern: "[A-Za-z0-9_.~-]{1,64}", autocomplete: "off" });
  const type = select([["rest", "REST API"], ["http", "HTTP API"]], "rest");
  const create = h("button", { type: "submit", class: "primary" }, "Create API");
  const form = h("form", { class: "card", "aria-labelledby": "create-api" },
    h("h2", { id: "create-api" }, "Create API"),
    h("div", { class: "row" }, field("API name", name), field("API type", type,
      "REST: stages under /{stage}, payload 1.0. HTTP: the $default stage at the root, payload 2.0.")),
    h("div", { class: "actions" }, create));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const n = name.value.trim();
    const done = await act(create, async () => {
      if (apis[n]) throw new Error(`There is an API named ${n} already.`);
      return put(`/console/api/drafts/${enc(n)}`, { type: type.value, routes: [] });
    });
    if (done) go(`#/apis/${enc(n)}`, `API ${n} created.`);
  });
  const rows = Object.entries(apis).map(([n, a]) => h("tr", {},
    h("td", {}, h("a", { href: `#/apis/${enc(n)}` }, n), (config.apis || {})[n] ? "" : h("span", { class: "badge warn" }, " not deployed")),
    h("td", {}, (a.type || "rest").toUpperCase()),
    h("td", {}, String((a.routes || []).length)),
    h("td", {}, Object.keys(a.stages || {}).map((s) => h("div", {}, `${s}: `,
      h("a", { href: invokeUrl(a, s), class: "url" }, invokeUrl(a, s)))))));
  page("APIs", table("APIs", ["Name", "Type", "Methods", "Stages and invoke URLs"], rows), form);
}

/** Save the API's draft: what its resources and methods will be once deployed. */
const saveDraft = (name, api) => put(`/console/api/drafts/${enc(name)}`, api);

function methodForm(name, api, config) {
  const path = h("input", { value: "/", required: true, autocomplete: "off" });
  const method = select(METHODS, "ANY");
  const kind = select([["lambda", "Lambda proxy"], ["http", "HTTP"], ["mock", "Mock"]], "lambda");
  const fns = Object.keys(config.functions || {});
  const ups = Object.keys(config.upstreams || {});
  const fn = select(fns.length ? fns : [["", "(no functions yet)"]]);
  const upstream = select(ups.length ? ups : [["", "(no upstreams yet)"]]);
  const upPath = h("input", { placeholder: "(the client's path)", autocomplete: "off" });
  const status = h("input", { type: "number", value: "200", min: "100", max: "599" });
  const body = h("textarea", { rows: 3, cols: 50 });
  body.value = '{"message": "mocked"}';
  const groups = {
    lambda: h("div", {}, field("Lambda function", fn, "The function's handler gets the request as a Lambda proxy event.")),
    http: h("div", { class: "row" }, field("Upstream", upstream), field("Upstream path", upPath, "Optional template: /users/{id}")),
    mock: h("div", {}, field("Status", status), field("Response body", body, "JSON, or text")),
  };
  const show = () => { for (const [k, g] of Object.entries(groups)) g.hidden = k !== kind.value; };
  kind.addEventListener("change", show);
  show();
  const save = h("button", { type: "submit", class: "primary" }, "Create method");
  const form = h("form", { class: "card", "aria-labelledby": "create-method" },
    h("h2", { id: "create-method" }, "Create method"),
    h("div", { class: "row" }, field("Resource path", path, "/, /pets, /pets/{id}, /{proxy+}"), field("Method", method),
      field("Integration type", kind)),
    Object.values(groups), h("div", { class: "actions" }, save));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    let integration;
    if (kind.value === "lambda") integration = { type: "lambda", function: fn.value };
    else if (kind.value === "http") {
      integration = { type: "http", upstream: upstream.value };
      if (upPath.value.trim()) integration.path = upPath.value.trim();
    } else {
      let b = body.value;
      try { b = JSON.parse(b); } catch { /* text */ }
      integration = { type: "mock", status: Number(status.value), body: b };
    }
    const route = { path: path.value.trim(), methods: [method.value], integration };
    const done = await act(save, () => saveDraft(name, { ...api, routes: [...(api.routes || []), route] }));
    if (done) go(`#/apis/${enc(name)}`, `Method ${method.value} ${route.path} created: deploy the API to serve it.`);
  });
  return form;
}

function deployForm(name, api, hasDraft) {
  const stages = Object.keys(api.stages || {});
  const NEW = "*new*";
  const stage = select([...stages, [NEW, "[New stage]"]], NEW);
  const stageName = h("input", { autocomplete: "off", pattern: "[A-Za-z0-9_-]{1,128}|\\$default" });
  const vars = h("textarea", { rows: 3, cols: 40, placeholder: "name=value, one a line" });
  const description = h("input", { autocomplete: "off" });
  const newField = field("Stage name", stageName);
  const fill = () => {
    newField.hidden = stage.value !== NEW;
    const v = (api.stages || {})[stage.value]?.variables || {};
    vars.value = Object.entries(v).map(([k, x]) => `${k}=${x}`).join("\n");
  };
  stage.addEventListener("change", fill);
  fill();
  const deploy = h("button", { type: "submit", class: "primary" }, "Deploy");
  const form = h("form", { class: "card", "aria-labelledby": "deploy-api" },
    h("h2", { id: "deploy-api" }, "Deploy API"),
    h("div", { class: "row" }, field("Stage", stage), newField),
    field("Stage variables", vars, "name=value, one a line (${stageVariables.name} in integrations)"),
    field("Deployment description", description),
    h("div", { class: "actions" }, deploy));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const s = stage.value === NEW ? stageName.value.trim() : stage.value;
    if (!s) {
      stageName.focus();
      return;
    }
    const variables = {};
    for (const line of vars.value.split("\n")) {
      const i = line.indexOf("=");
      if (i > 0) variables[line.slice(0, i).trim()] = line.slice(i + 1).trim();
    }
    const done = await act(deploy, async () => {
      const stagesNow = { ...(api.stages || {}), [s]: { ...((api.stages || {})[s] || {}), variables } };
      const out = await put(`/apis/${enc(name)}`, { ...api, stages: stagesNow },
        description.value || `deploy API ${name} to stage ${s}`);
      if (hasDraft) await del(`/console/api/drafts/${enc(name)}`);
      return out;
    });
    if (done) go(`#/apis/${enc(name)}`, `Deployed ${name} to stage ${s} (deployment ${done.deployment}).`);
  });
  return form;
}

export async function detail(name) {
  const config = await get("/config");
  const serving = (config.apis || {})[name];
  const draft = await get(`/console/api/drafts/${enc(name)}`).catch((err) => {
    if (err.status === 404) return null;
    throw err;
  });
  // What is edited: the draft when there is one (changes not deployed yet), else what serves (masked secrets
  // included: PUT /apis keeps the secret a mask stands for).
  const api = draft || (serving ? await get(`/apis/${enc(name)}`) : null);
  if (!api) throw Object.assign(new Error(`no API ${name}`), { status: 404 });
  const routes = api.routes || [];
  const rows = routes.map((r, i) => {
    const remove = h("button", { type: "button", class: "danger", "aria-label": `Delete ${(r.methods || ["ANY"]).join(",")} ${r.path}` }, "Delete");
    remove.addEventListener("click", async () => {
      if (!(await confirmDialog(`Delete ${(r.methods || ["ANY"]).join(",")} ${r.path} from ${name}?`, "Delete"))) return;
      const done = await act(remove, () => saveDraft(name, { ...api, routes: routes.filter((_, j) => j !== i) }));
      if (done) go(`#/apis/${enc(name)}`, "Method deleted: deploy the API to stop serving it.");
    });
    return h("tr", {}, h("td", { class: "url" }, r.path), h("td", {}, (r.methods || ["ANY"]).join(", ")),
      h("td", {}, describe(r.integration)), h("td", {}, remove));
  });
  const stageRows = Object.entries((serving || {}).stages || {}).map(([s, st]) => {
    const url = invokeUrl(api, s);
    const copy = h("button", { type: "button", "aria-label": `Copy invoke URL of stage ${s}` }, "Copy");
    copy.addEventListener("click", async () => {
      if (await copyText(url)) showOk(`Copied ${url}`);
    });
    return h("tr", {}, h("td", {}, s),
      h("td", {}, h("a", { href: url, class: "url invoke-url", target: "_blank", rel: "noopener" }, url), " ", copy),
      h("td", {}, Object.entries(st.variables || {}).map(([k, v]) => `${k}=${v}`).join(", ") || "—"));
  });
  const removeApi = h("button", { type: "button", class: "danger" }, "Delete API");
  removeApi.addEventListener("click", async () => {
    if (!(await confirmDialog(`Delete the API ${name}, its methods and stages?`, "Delete"))) return;
    const done = await act(removeApi, async () => {
      if (draft) await del(`/console/api/drafts/${enc(name)}`);
      return serving ? del(`/apis/${enc(name)}`) : {};
    });
    if (done) go("#/apis", `API ${name} deleted.`);
  });
  page(`API ${name}`, h("p", {}, h("a", { href: "#/apis" }, "← APIs"), ` · ${(api.type || "rest").toUpperCase()} API`),
    draft ? h("p", { class: "badge warn", id: "undeployed" },
      serving ? "Changes not deployed yet: deploy the API to a stage to serve them." : "Not deployed yet: deploy the API to a stage to serve it.") : null,
    h("section", { class: "card" }, table("Resources and methods", ["Resource", "Methods", "Integration", ""], rows)),
    methodForm(name, api, config),
    h("section", { class: "card" }, table("Stages", ["Stage", "Invoke URL", "Stage variables"], stageRows)),
    deployForm(name, api, Boolean(draft)), h("div", { class: "actions" }, removeApi));
}
