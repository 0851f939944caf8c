// Functions: list, create (name + runtime, the Lambda console's default handler), edit the code, the Test tab.
import { enc, get, post, put, del } from "./api.js";
import { act, codeEditor, confirmDialog, field, go, h, page, select, table } from "./ui.js";

// What the Lambda console writes for a new function, per runtime: [file, handler, code].
export const DEFAULTS = {
  nodejs: ["index.mjs", "index.handler", `export const handler = async (event) => {
  // TODO implement
  const response = {
    statusCode: 200,
    body: JSON.stringify('Hello from Lambda!'),
  };
  return response;
};
`],
  python: ["lambda_function.py", "lambda_function.lambda_handler", `import json

def lambda_handler(event, context):
    # TODO implement
    return {
        'statusCode': 200,
        'body': json.dumps('Hello from Lambda!')
    }
`],
};

const TEST_EVENT = `{
  "key1": "value1",
  "key2": "value2",
  "key3": "value3"
}`;

/** Write the code to a new folder, then point the function at it: one deployment. */
async function saveFunction(name, spec, file, text, description) {
  const written = await put(`/console/api/functions/${enc(name)}/code`, { files: { [file]: text } });
  return put(`/functions/${enc(name)}`, { ...spec, code: written.code }, description);
}

export async function list() {
  const config = await get("/config");
  const fns = config.functions || {};
  const name = h("input", { required: true, pattern: "[A-Za-z0-9_.~-]{1,64}", autocomplete: "off" });
  const runtime = select([["nodejs", "Node.js (nodejs)"], ["python", "Python (python)"]], "nodejs");
  const create = h("button", { type: "submit", class: "primary" }, "Create function");
  const form = h("form", { class: "card", "aria-labelledby": "create-fn" },
    h("h2", { id: "create-fn" }, "Create function"),
    h("div", { class: "row" },
      field("Function name", name, "Letters, digits, - _ . ~"),
      field("Runtime", runtime)),
    h("p", { class: "muted" }, "Starts with the Lambda console's default handler, which answers \"Hello from Lambda!\"."),
    h("div", { class: "actions" }, create));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const fn = name.value.trim();
    const [file, handler, code] = DEFAULTS[runtime.value];
    const done = await act(create, () => saveFunction(fn, { runtime: runtime.value, handler }, file, code,
      `create function ${fn}`));
    if (done) go(`#/functions/${enc(fn)}`, `Function ${fn} created (deployment ${done.deployment}).`);
  });
  const rows = Object.entries(fns).map(([n, f]) => h("tr", {},
    h("td", {}, h("a", { href: `#/functions/${enc(n)}` }, n)), h("td", {}, f.runtime), h("td", {}, f.handler),
    h("td", {}, f.code || "(the config's folder)")));
  page("Functions", table("Functions", ["Name", "Runtime", "Handler", "Code"], rows), form);
}

export async function detail(name) {
  const config = await get("/config");
  const spec = (config.functions || {})[name];
  if (!spec) throw Object.assign(new Error(`no function ${name}`), { status: 404 });
  const code = await get(`/console/api/functions/${enc(name)}/code`);
  const editor = codeEditor(code.text, `Code of ${code.file}`);
  const deploy = h("button", { type: "button", class: "primary" }, "Deploy");
  deploy.addEventListener("click", () => act(deploy,
    () => saveFunction(name, spec, code.file, editor.textarea.value, `edit function ${name}`),
    (out) => `Deployed: ${name} now runs the new code (deployment ${out.deployment}).`));
  const codePanel = h("section", { class: "card", id: "panel-code", role: "tabpanel", "aria-labelledby": "tab-code" },
    h("p", { class: "muted" }, `${code.file} · runtime ${spec.runtime} · handler ${spec.handler}`,
      code.others.length ? ` · the folder also holds ${code.others.join(", ")} (kept out of what the console writes)` : ""),
    h("p", { class: "muted", id: "editor-keys" }, "Tab indents, Shift+Tab outdents; press Escape then Tab to leave the editor."),
    editor, h("div", { class: "actions" }, deploy));
  editor.textarea.setAttribute("aria-describedby", "editor-keys");

  const event = h("textarea", { rows: 8, cols: 60, spellcheck: "false" });
  event.value = TEST_EVENT;
  const test = h("button", { type: "button", class: "primary" }, "Test");
  const result = h("div", { "aria-live": "polite", id: "test-result" });
  test.addEventListener("click", async () => {
    let parsed;
    try {
      parsed = JSON.parse(event.value);
    } catch (err) {
      result.replaceChildren(h("p", { class: "badge bad" }, `The event is not JSON: ${err.message}`));
      return;
    }
    const out = await act(test, () => post(`/console/api/functions/${enc(name)}/invoke`, parsed));
    if (!out) return;
    result.replaceChildren(
      h("h3", {}, "Execution result: ", h("span", { class: `badge ${out.ok ? "ok" : "bad"}` }, out.ok ? "succeeded" : "failed")),
      h("h4", {}, "Response"), h("pre", { class: "response" }, JSON.stringify(out.ok ? out.result : out.error, null, 2)),
      h("p", {}, `Duration: ${out.duration_ms} ms${out.cold_start ? " (cold start)" : ""} · Request ID: ${out.request_id}`),
      h("h4", {}, "Function logs"), h("pre", { class: "logs" }, (out.logs || []).join("\n") || "(no log lines)"));
  });
  const testPanel = h("section", { class: "card", id: "panel-test", role: "tabpanel", "aria-labelledby": "tab-test", hidden: true },
    field("Event JSON", event, "Sent to the handler as its event."), h("div", { class: "actions" }, test), result);

  const tabs = h("div", { class: "tabs", role: "tablist", "aria-label": "Function" },
    h("button", { type: "button", role: "tab", id: "tab-code", "aria-controls": "panel-code", "aria-selected": "true" }, "Code"),
    h("button", { type: "button", role: "tab", id: "tab-test", "aria-controls": "panel-test", "aria-selected": "false", tabindex: "-1" }, "Test"));
  const panels = { "tab-code": codePanel, "tab-test": testPanel };
  const choose = (tab) => {
    for (const t of tabs.querySelectorAll("[role=tab]")) {
      const on = t === tab;
      t.setAttribute("aria-selected", String(on));
      t.tabIndex = on ? 0 : -1;
      panels[t.id].hidden = !on;
    }
    tab.focus();
  };
  tabs.addEventListener("click", (e) => e.target.closest("[role=tab]") && choose(e.target.closest("[role=tab]")));
  tabs.addEventListener("keydown", (e) => {
    if (e.key !== "ArrowLeft" && e.key !== "ArrowRight") return;
    const all = [...tabs.querySelectorAll("[role=tab]")];
    const i = all.indexOf(document.activeElement);
    choose(all[(i + (e.key === "ArrowRight" ? 1 : all.length - 1)) % all.length]);
  });
  const remove = h("button", { type: "button", class: "danger" }, "Delete function");
  remove.addEventListener("click", async () => {
    if (!(await confirmDialog(`Delete function ${name}? Routes that call it must go first.`, "Delete"))) return;
    if (await act(remove, () => del(`/functions/${enc(name)}`))) go("#/functions", `Function ${name} deleted.`);
  });
  page(`Function ${name}`, h("p", {}, h("a", { href: "#/functions" }, "← Functions")), tabs, codePanel, testPanel,
    h("div", { class: "actions" }, remove));
}
