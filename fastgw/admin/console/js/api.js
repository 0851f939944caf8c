// The admin API, as the console calls it: the same paths and JSON a user could send with curl.

const TOKEN = "fastgw-admin-token";

export class ApiError extends Error {
  constructor(status, body) {
    super(body.message || `HTTP ${status}`);
    this.status = status;
    this.body = body;
    // The key path of a refused config: given as `path`, else the first `$...` the message names.
    const m = (body.message || "").match(/\$[^\s:]*/);
    this.path = body.path || (m ? m[0] : "");
  }
}

let asking = null;

function askToken() {
  asking ||= new Promise((resolve) => {
    const dlg = document.getElementById("token-dialog");
    const input = document.getElementById("token-input");
    input.value = "";
    dlg.addEventListener("close", () => {
      sessionStorage.setItem(TOKEN, input.value.trim());
      document.getElementById("signout").hidden = false;
      asking = null;
      resolve();
    }, { once: true });
    dlg.showModal();
    input.focus();
  });
  return asking;
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN);
}

export async function call(method, path, body, headers = {}) {
  for (;;) {
    const opts = { method, headers: { ...headers } };
    const token = sessionStorage.getItem(TOKEN);
    if (token) opts.headers.authorization = `Bearer ${token}`;
    if (body !== undefined) {
      opts.headers["content-type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const r = await fetch(path, opts);
    const text = await r.text();
    let data;
    try {
      data = text ? JSON.parse(text) : {};
    } catch {
      data = { message: text };
    }
    if (r.status === 401) {
      await askToken();
      continue;
    }
    if (!r.ok) throw new ApiError(r.status, data);
    const etag = r.headers.get("etag");
    if (etag && data && typeof data === "object") Object.defineProperty(data, "etag", { value: etag, enumerable: false });
    return data;
  }
}

export const get = (path) => call("GET", path);
/**
 * PUT an item; `ifMatch` (the ETag of the read the form was filled from) makes it a compare-and-swap: if anyone
 * deployed since, the API answers 409 and nothing changes.
 */
export const put = (path, body, description, ifMatch) =>
  call("PUT", path, body, { ...(description ? { "x-fastgw-description": description } : {}),
                            ...(ifMatch ? { "if-match": ifMatch } : {}) });
export const del = (path) => call("DELETE", path);
export const post = (path, body) => call("POST", path, body);
export const enc = encodeURIComponent;

/** What the console learns once (GET /console/api/info): where the traffic port is. */
export const info = { traffic: `${location.protocol}//${location.hostname}:8000`, tokens: false };
