// The console's pages, one per hash (#/functions, #/apis/my-rest-api, ...): each is a view over admin API calls.
import { forgetToken, get, info } from "./api.js";
import { clearAlert, h, page, showError, showOk, takeFlash } from "./ui.js";
import * as functions from "./functions.js";
import * as apis from "./apis.js";

const PAGES = [
  [/^#\/functions$/, functions.list],
  [/^#\/functions\/([^/]+)$/, functions.detail],
  [/^#\/apis$/, apis.list],
  [/^#\/apis\/([^/]+)$/, apis.detail],
  [/^#\/(routes|upstreams|consumers)$/, async (kind) => (await import("./resources.js")).show(kind)],
  [/^#\/deployments$/, async () => (await import("./deployments.js")).show()],
  [/^#\/traffic$/, async () => (await import("./traffic.js")).show()],
];

let leaving = [];

/** Something to stop when the page changes (a timer of live charts). */
export function onLeave(fn) {
  leaving.push(fn);
}

async function render() {
  for (const fn of leaving) fn();
  leaving = [];
  const hash = location.hash && location.hash !== "#" ? location.hash : "#/functions";
  clearAlert();
  for (const a of document.querySelectorAll("nav a")) {
    const on = hash === a.getAttribute("href") || hash.startsWith(a.getAttribute("href") + "/");
    if (on) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const flash = takeFlash();
  for (const [pattern, view] of PAGES) {
    const m = hash.match(pattern);
    if (!m) continue;
    try {
      await view(...m.slice(1).map(decodeURIComponent));
      if (flash) showOk(flash);
    } catch (err) {
      page("Something went wrong");
      showError(err);
    }
    document.querySelector("main h1")?.focus();
    return;
  }
  page("Not found", h("p", {}, "No such page. ", h("a", { href: "#/functions" }, "Functions")));
}

/** The header's line: the deployment serving, and how many routes. */
async function serving() {
  try {
    const status = await get("/status");
    document.getElementById("serving").textContent = `deployment ${status.deployment || "-"} · ${status.routes} routes`;
  } catch {
    // the page says why elsewhere
  }
}

async function start() {
  document.getElementById("signout").addEventListener("click", () => {
    forgetToken();
    location.reload();
  });
  try {
    Object.assign(info, await get("/console/api/info"));
    document.getElementById("signout").hidden = !info.tokens;
  } catch (err) {
    showError(err);
  }
  window.addEventListener("hashchange", render);
  window.addEventListener("hashchange", serving);
  await Promise.all([render(), serving()]);
}

start();
