// Small DOM helpers: the whole console is plain DOM code, no framework (docs/console.md says why).

let nextId = 0;
export const uid = (prefix = "f") => `${prefix}-${++nextId}`;

/** h("button", {class: "primary", onclick: fn}, "Save"): an element; children are nodes or text. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const c of children.flat(Infinity)) {
    if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "value" || k === "checked") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  return el;
}

/** A labelled control: every input of the console is named for screen readers by a <label for>. */
export function field(label, control, hint) {
  control.id ||= uid();
  const parts = [h("label", { for: control.id }, label), control];
  if (hint) {
    const hid = uid("hint");
    control.setAttribute("aria-describedby", hid);
    parts.push(h("small", { id: hid }, hint));
  }
  return h("div", { class: "field" }, parts);
}

export function select(options, value, attrs = {}) {
  const el = h("select", attrs, options.map((o) => {
    const [v, text] = Array.isArray(o) ? o : [o, o];
    return h("option", { value: v }, text);
  }));
  if (value !== undefined) el.value = value;
  return el;
}

const alertBox = () => document.getElementById("alert");

/** An admin API error on the page: its message and the key path it names ($.routes[0].path), announced. */
export function showError(err) {
  const box = alertBox();
  box.className = "alert";
  box.replaceChildren();
  const status = err.status ? `HTTP ${err.status}: ` : "";
  box.append(h("strong", {}, "Error. "), status + (err.message || String(err)));
  if (err.path) box.append(" ", h("span", {}, "Key path: "), h("code", { class: "key-path" }, err.path));
  if (err.status === 409) box.append(" ", h("a", { href: location.hash, onclick: () => location.reload() }, "Reload the page"), " to edit what serves now.");
}

export function showOk(text) {
  const box = alertBox();
  box.className = "alert ok";
  box.replaceChildren(text);
}

export function clearAlert() {
  alertBox().replaceChildren();
}

/** Run an async action from a button: disabled while it runs, errors shown, success text announced. */
export async function act(button, fn, okText) {
  if (button) button.disabled = true;
  clearAlert();
  try {
    const out = await fn();
    if (okText) showOk(typeof okText === "function" ? okText(out) : okText);
    return out;
  } catch (err) {
    showError(err);
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

export function page(title, ...children) {
  document.title = `${title} · fastgw console`;
  const main = document.getElementById("main");
  const h1 = h("h1", { tabindex: "-1" }, title);
  main.replaceChildren(h1, ...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return h1;
}

export function table(caption, heads, rows) {
  return h("table", {},
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, heads.map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: heads.length, class: "muted" }, "None yet."))));
}

export function confirmDialog(text, okLabel = "Confirm") {
  const dlg = document.getElementById("confirm-dialog");
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = okLabel;
  dlg.returnValue = "";
  return new Promise((resolve) => {
    dlg.addEventListener("close", () => resolve(dlg.returnValue === "ok"), { once: true });
    dlg.showModal();
  });
}

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const ta = h("textarea", { "aria-hidden": "true" }, text);
    document.body.append(ta);
    ta.select();
    const ok = document.execCommand("copy");
    ta.remove();
    return ok;
  }
}

/**
 * A code editor: a textarea with line numbers. Tab indents (Shift+Tab outdents); Escape then Tab moves on, so
 * a keyboard user is never trapped in it.
 */
export function codeEditor(text, label) {
  const area = h("textarea", { spellcheck: "false", autocapitalize: "off", autocomplete: "off", wrap: "off",
                               "aria-label": label, class: "code" });
  area.value = text;
  const gutter = h("pre", { class: "gutter", "aria-hidden": "true" });
  const number = () => {
    const n = area.value.split("\n").length;
    gutter.textContent = Array.from({ length: n }, (_, i) => i + 1).join("\n");
  };
  let escaped = false;
  area.addEventListener("keydown", (e) => {
    if (e.key === "Escape") { escaped = true; return; }
    if (e.key === "Tab" && !escaped) {
      e.preventDefault();
      const { selectionStart: s, selectionEnd: t, value } = area;
      if (e.shiftKey) {
        const lineStart = value.lastIndexOf("\n", s - 1) + 1;
        const strip = value.slice(lineStart, lineStart + 4).match(/^ */)[0].length;
        area.setRangeText("", lineStart, lineStart + strip, "end");
      } else {
        area.setRangeText("    ", s, t, "end");
      }
      number();
      return;
    }
    if (e.key === "Enter" && !e.shiftKey && !e.ctrlKey) {
      // keep the line's indentation
      e.preventDefault();
      const s = area.selectionStart;
      const lineStart = area.value.lastIndexOf("\n", s - 1) + 1;
      const indent = area.value.slice(lineStart, s).match(/^ */)[0];
      area.setRangeText("\n" + indent, s, area.selectionEnd, "end");
      number();
    }
    escaped = false;
  });
  area.addEventListener("input", number);
  area.addEventListener("scroll", () => { gutter.scrollTop = area.scrollTop; });
  number();
  const wrap = h("div", { class: "editor" }, gutter, area);
  wrap.textarea = area;
  return wrap;
}

let flash = "";

/** Go to another page and say `text` there once it shows. */
export function go(hash, text) {
  flash = text || "";
  if (location.hash === hash) window.dispatchEvent(new HashChangeEvent("hashchange"));
  else location.hash = hash;
}

export function takeFlash() {
  const text = flash;
  flash = "";
  return text;
}
