// Deployments: the timeline (newest first), the diff between two, rollback with a confirmation.
import { get, post } from "./api.js";
import { act, confirmDialog, field, go, h, page, select, table } from "./ui.js";

const when = (t) => (typeof t === "number" ? new Date(t * 1000) : new Date(t)).toLocaleString();
const short = (v) => (v === undefined ? "" : JSON.stringify(v));

function label(d) {
  return `${d.id.slice(0, 12)} · ${when(d.time)} · ${d.description || d.source}`;
}

export async function show() {
  const { deployments } = await get("/deployments");
  const items = deployments.map((d) => {
    const rollback = d.active ? h("span", { class: "badge ok" }, "serving")
      : h("button", { type: "button", class: "danger", "aria-label": `Roll back to ${d.id}` }, "Roll back");
    if (!d.active) {
      rollback.addEventListener("click", async () => {
        const ok = await confirmDialog(`Serve deployment ${d.id} (${d.description || d.source}, ${when(d.time)}) again? `
          + "Its config becomes a new deployment on every worker; the config file is not written.", "Roll back");
        if (!ok) return;
        const done = await act(rollback, () => post(`/deployments/${d.id}/rollback`));
        if (done) go("#/deployments", `Rolled back to ${d.id}: deployment ${done.deployment} serves (the file ${done.file || "-"}).`);
      });
    }
    return h("li", { class: "card" },
      h("div", { class: "row" }, h("strong", { class: "url" }, d.id), h("span", { class: "muted" }, when(d.time)),
        d.revision !== undefined ? h("span", { class: "muted" }, `revision ${d.revision}`) : null, rollback),
      h("div", {}, d.description || "(no description)"),
      h("div", { class: "muted" }, `${d.source} · by ${d.author || "-"}`),
    );
  });
  const options = deployments.map((d) => [d.id, label(d)]);
  const from = select(options, deployments[1]?.id ?? deployments[0]?.id);
  const to = select(options, deployments[0]?.id);
  const compare = h("button", { type: "submit", class: "primary" }, "Show diff");
  const out = h("div", { id: "diff", "aria-live": "polite" });
  const form = h("form", { class: "card", "aria-labelledby": "diff-title" },
    h("h2", { id: "diff-title" }, "Compare two deployments"),
    h("div", { class: "row" }, field("From", from), field("To", to)), h("div", { class: "actions" }, compare), out);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const d = await act(compare, () => get(`/deployments/${from.value}/diff/${to.value}`));
    if (!d) return;
    out.replaceChildren(table(`${d.changes.length} change(s) from ${d.from.slice(0, 12)} to ${d.to.slice(0, 12)}`,
      ["Key path", "Change", "Before", "After"],
      d.changes.map((c) => h("tr", { class: `diff-${c.op}` }, h("td", { class: "url" }, c.path), h("td", {}, c.op),
        h("td", {}, h("code", {}, short(c.before))), h("td", {}, h("code", {}, short(c.after)))))));
  });
  page("Deployments", deployments.length > 1 ? form : null,
    h("section", { "aria-labelledby": "timeline" }, h("h2", { id: "timeline" }, "Timeline (newest first)"),
      h("ol", { class: "timeline" }, items)));
}
