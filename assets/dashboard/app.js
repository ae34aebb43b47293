// keygate's dashboard: a page on the admin listener. The root key lives in
// this tab's sessionStorage only and goes out as the bearer token to the
// admin listener's JSON endpoints; nothing is loaded from anywhere else.
"use strict";

const KEY = "keygate.rootKey";
const pages = { routes, deployments, requests, keys, certificates };
let timer = null;

const $ = (selector) => document.querySelector(selector);

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function table(headings, rows) {
  if (rows.length === 0) return el("div", { class: "empty" }, "Nothing yet.");
  return el("table", {}, el("thead", {}, el("tr", {}, headings.map((h) => el("th", {}, h)))), el("tbody", {}, rows));
}

class Unauthorized extends Error {}

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: Object.assign({ Authorization: "Bearer " + sessionStorage.getItem(KEY) }, body ? { "Content-Type": "application/json" } : {}),
    body: body ? JSON.stringify(body) : undefined,
    cache: "no-store",
  });
  const answer = await response.json().catch(() => ({}));
  if (response.status === 401 || response.status === 403) throw new Unauthorized(answer.error ? answer.error.detail : "Not allowed");
  if (!response.ok) throw new Error(answer.error ? answer.error.detail : response.statusText);
  return answer.data;
}

function show(section) {
  $("#sign-in").hidden = section !== "sign-in";
  $("#page").hidden = section !== "page";
  $("#nav").hidden = section !== "page";
  $("#sign-out").hidden = section !== "page";
}

function signOut(message) {
  sessionStorage.removeItem(KEY);
  clearInterval(timer);
  $("#sign-in-error").textContent = message || "";
  show("sign-in");
}

async function render() {
  clearInterval(timer);
  if (!sessionStorage.getItem(KEY)) return signOut();
  const name = location.hash.slice(1) in pages ? location.hash.slice(1) : "routes";
  for (const link of document.querySelectorAll("#nav a")) link.classList.toggle("active", link.dataset.page === name);
  show("page");
  const page = $("#page");
  page.dataset.page = name;
  try {
    await pages[name](page);
  } catch (error) {
    if (error instanceof Unauthorized) return signOut(error.message);
    page.replaceChildren(el("p", { class: "error" }, error.message));
  }
}

function statusClass(status) {
  return status >= 500 || status === 0 ? "status-5xx" : status >= 400 ? "status-4xx" : "status-2xx";
}

function ms(micros) {
  return (micros / 1000).toFixed(1) + " ms";
}

// ---------------------------------------------------------------- routes

async function routes(page) {
  const [table_, stats] = await Promise.all([api("GET", "/v1/routes"), api("GET", "/v1/stats")]);
  const byId = Object.fromEntries(table_.deployments.map((d) => [d.id, d]));
  const rates = Object.fromEntries(stats.deployments.map((d) => [d.id, lastMinutes(d.minutes, 5)]));
  const rows = table_.routes.map((r) => {
    const deployment = r.deployment ? byId[r.deployment] : null;
    const rate = rates[r.deployment] || { requests: 0, errors: 0 };
    return el("tr", {},
      el("td", {}, el("code", {}, r.host)),
      el("td", {}, el("code", {}, r.path_regex ? "~ " + r.path_regex : r.path_prefix)),
      el("td", {}, r.redirect ? "redirect" : r.backends.length > 1 ? r.backends.map((b) => `${b.deployment} ${b.weight}`).join(", ") : r.deployment || r.refusal || ""),
      el("td", {}, r.provider),
      el("td", {}, deployment ? deployment.policies.join(", ") : ""),
      el("td", {}, deployment ? deployment.instances.map((i) => el("div", { class: i.healthy ? "healthy" : "unhealthy" }, `${i.address} ${i.healthy ? "healthy" : "unhealthy"}`)) : ""),
      el("td", {}, (rate.requests / 300).toFixed(2) + "/s"),
      el("td", {}, rate.requests ? ((100 * rate.errors) / rate.requests).toFixed(1) + "%" : "–"));
  });
  page.replaceChildren(
    el("h1", {}, "Routes"),
    el("div", { class: "charts" }, stats.deployments.map(chart)),
    table(["Host", "Path", "Deployment", "Provider", "Policies", "Instances", "Requests (5 min)", "Errors"], rows));
}

function lastMinutes(minutes, count) {
  const since = Date.now() - count * 60000;
  return minutes.filter((m) => m.at >= since).reduce((sum, m) => ({ requests: sum.requests + m.requests, errors: sum.errors + m.errors }), { requests: 0, errors: 0 });
}

function chart(series) {
  const width = 400, height = 90, now = Date.now();
  const x = (at) => width - ((now - at) / 3600000) * width;
  const line = (values, max, color) => {
    const points = series.minutes.map((m, i) => `${x(m.at).toFixed(1)},${(height - 4 - (values[i] / (max || 1)) * (height - 8)).toFixed(1)}`).join(" ");
    const svgNs = "http://www.w3.org/2000/svg";
    const polyline = document.createElementNS(svgNs, "polyline");
    polyline.setAttribute("points", points);
    polyline.setAttribute("fill", "none");
    polyline.setAttribute("stroke", color);
    polyline.setAttribute("stroke-width", "1.5");
    return polyline;
  };
  const requests = series.minutes.map((m) => m.requests);
  const errors = series.minutes.map((m) => m.errors);
  const p50 = series.minutes.map((m) => m.p50_ms);
  const p99 = series.minutes.map((m) => m.p99_ms);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const maxRate = Math.max(1, ...requests), maxLatency = Math.max(1, ...p99);
  svg.append(line(requests, maxRate, "#2563eb"), line(errors, maxRate, "#b91c1c"), line(p50, maxLatency, "#15803d"), line(p99, maxLatency, "#b45309"));
  const last = series.minutes[series.minutes.length - 1] || { requests: 0, errors: 0, p50_ms: 0, p99_ms: 0 };
  return el("div", { class: "chart" },
    el("h3", {}, series.id, el("span", { class: "muted" }, " — last hour")),
    svg,
    el("div", { class: "legend" }, `requests/min ${last.requests} (blue) · errors ${last.errors} (red) · p50 ${last.p50_ms} ms (green) · p99 ${last.p99_ms} ms (amber)`));
}

// ---------------------------------------------------------------- deployments

async function deployments(page) {
  const [overview, snapshot] = await Promise.all([api("GET", "/v1/deployments"), api("GET", "/v1/routes")]);
  const act = async (operation, body) => {
    try {
      await api("POST", "/v2/" + operation, body);
      await deployments(page);
    } catch (error) {
      if (error instanceof Unauthorized) return signOut(error.message);
      $("#deploy-error").textContent = error.message;
    }
  };
  const projects = overview.projects.flatMap((project) => {
    const byEnvironment = {};
    for (const d of project.deployments) (byEnvironment[d.environmentSlug] = byEnvironment[d.environmentSlug] || []).push(d);
    return [
      el("h2", {}, `${project.id} (${project.slug})`),
      ...(project.deployments.length === 0 ? [el("div", { class: "empty" }, "No deployments yet: create one with deploy.createDeployment.")] : []),
      ...Object.keys(byEnvironment).sort().flatMap((environment) => {
        const list = byEnvironment[environment];
        const canRollBack = list.some((d) => d.status === "standby");
        return [
          el("h3", {}, environment, " ",
            el("button", { class: "action", "data-action": "rollback", "data-environment": environment, disabled: canRollBack ? null : "",
              onclick: () => act("deploy.rollback", { projectId: project.id, environmentSlug: environment }) }, "Roll back")),
          table(["Deployment", "Branch", "Commit", "Status", "Domains", ""], list.map((d) => el("tr", { "data-deployment-id": d.id },
            el("td", {}, el("code", {}, d.id), d.live ? el("strong", { class: "healthy" }, " live") : ""),
            el("td", {}, d.branch),
            el("td", {}, el("code", {}, (d.gitCommit.commitSha || "").slice(0, 7))),
            el("td", { class: d.status === "failed" ? "status-5xx" : "" }, d.status, d.error ? el("div", { class: "muted" }, d.error) : ""),
            el("td", {}, d.domains.map((domain) => el("div", {}, el("code", {}, domain)))),
            el("td", {}, !d.live && ["ready", "standby", "archived"].includes(d.status)
              ? el("button", { class: "action", "data-action": "promote", onclick: () => act("deploy.promote", { deploymentId: d.id }) }, "Promote")
              : "")))),
        ];
      }),
    ];
  });
  const configured = {};
  for (const d of snapshot.deployments.filter((d) => !d.id.startsWith("d_"))) (configured[d.environment] = configured[d.environment] || []).push(d);
  page.replaceChildren(
    el("h1", {}, "Deployments"),
    el("p", { id: "deploy-error", class: "error", role: "alert" }),
    ...(overview.projects.length ? projects : [el("div", { class: "empty" }, "No projects: declare them under projects: to use the Deployments API.")]),
    el("h2", {}, "From the configuration and providers"),
    ...Object.keys(configured).sort().flatMap((environment) => [
      el("h3", {}, environment),
      table(["Deployment", "Protocol", "Selection", "Instances"], configured[environment].map((d) => el("tr", {},
        el("td", {}, el("code", {}, d.id)),
        el("td", {}, d.protocol),
        el("td", {}, d.selection),
        el("td", {}, d.instances.map((i) => el("div", { class: i.healthy ? "healthy" : "unhealthy" }, i.address)))))),
    ]));
}

// ---------------------------------------------------------------- requests

async function requests(page) {
  const filters = { host: "", status: "", deployment: "" };
  const seen = [];
  let after = 0;
  const body = el("div");
  const input = (name, placeholder) => el("input", { placeholder, "data-filter": name, oninput: (e) => { filters[name] = e.target.value.trim(); draw(); } });
  page.replaceChildren(el("h1", {}, "Requests"),
    el("div", { class: "filters" }, input("host", "host"), input("status", "status (e.g. 4, 401)"), input("deployment", "deployment")),
    body);
  const draw = () => {
    const shown = seen.filter((r) => (!filters.host || r.host.includes(filters.host))
      && (!filters.status || String(r.status).startsWith(filters.status))
      && (!filters.deployment || (r.deployment || "").includes(filters.deployment)));
    body.replaceChildren(table(["Time", "Method", "Host", "Path", "Status", "Deployment", "Total", "Instance", "Error", "Principal"],
      shown.slice(0, 300).map((r) => el("tr", { "data-request-id": r.request_id },
        el("td", {}, new Date(r.at).toLocaleTimeString()),
        el("td", {}, r.method),
        el("td", {}, r.host),
        el("td", {}, el("code", {}, r.path)),
        el("td", { class: statusClass(r.status) }, r.status),
        el("td", {}, r.deployment || ""),
        el("td", {}, ms(r.total_us)),
        el("td", {}, r.instance_us === null ? "" : ms(r.instance_us)),
        el("td", {}, r.error_code || ""),
        el("td", {}, r.subject || "")))));
  };
  const poll = async () => {
    try {
      const answer = await api("GET", "/v1/requests?after=" + after);
      after = answer.last;
      if (answer.requests.length) {
        seen.unshift(...answer.requests.reverse());
        seen.length = Math.min(seen.length, 1000);
      }
      draw();
    } catch (error) {
      if (error instanceof Unauthorized) signOut(error.message);
    }
  };
  await poll();
  timer = setInterval(poll, 1000);
}

// ---------------------------------------------------------------- keys

async function keys(page) {
  const results = el("div");
  const matches = (key, query) => !query || [key.keyId, key.name, key.identity && key.identity.externalId]
    .some((field) => field && field.toLowerCase().includes(query.toLowerCase()));
  const search = async (query) => {
    const keyspaces = (await api("POST", "/v2/apis.listApis", {})) || [];
    const found = [];
    for (const keyspace of keyspaces) {
      const listed = (await api("POST", "/v2/apis.listKeys", { apiId: keyspace.id, limit: 100 })) || [];
      for (const key of listed) if (matches(key, query)) found.push(Object.assign({ keyspaceId: keyspace.id }, key));
    }
    results.replaceChildren(
      el("h2", {}, "Keyspaces"),
      table(["Keyspace", "Name", "Source"], keyspaces.map((k) => el("tr", {}, el("td", {}, el("code", {}, k.id)), el("td", {}, k.name), el("td", {}, k.source)))),
      el("h2", {}, query ? `Keys matching “${query}”` : "Keys"),
      el("p", { id: "key-error", class: "error", role: "alert" }),
      table(["Key", "Name", "Keyspace", "External id", "Enabled", ""], found.map((k) => el("tr", { "data-key-id": k.keyId },
        el("td", {}, el("code", {}, k.keyId)),
        el("td", {}, k.name || ""),
        el("td", {}, k.keyspaceId),
        el("td", {}, (k.identity && k.identity.externalId) || ""),
        el("td", {}, k.enabled ? "yes" : "no"),
        el("td", {},
          el("button", { class: "action", "data-action": k.enabled ? "disable" : "enable", onclick: () => change("keys.updateKey", { keyId: k.keyId, enabled: !k.enabled }) }, k.enabled ? "Disable" : "Enable"),
          " ",
          el("button", { class: "action danger", "data-action": "revoke", onclick: () => confirm(`Revoke ${k.keyId}? It stops working at once.`) && change("keys.deleteKey", { keyId: k.keyId }) }, "Revoke"))))));
  };
  const change = async (operation, body) => {
    try {
      await api("POST", "/v2/" + operation, body);
      await search(box.value.trim());
    } catch (error) {
      if (error instanceof Unauthorized) return signOut(error.message);
      $("#key-error").textContent = error.message;
    }
  };
  const box = el("input", { id: "key-search", placeholder: "key id, name or external id", size: 40 });
  page.replaceChildren(el("h1", {}, "Keys"),
    el("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); search(box.value.trim()); } }, box, el("button", { type: "submit" }, "Search")),
    results);
  await search("");
}

// ---------------------------------------------------------------- certificates

async function certificates(page) {
  const answer = await api("GET", "/v1/certs");
  const days = (notAfter) => Math.floor((notAfter * 1000 - Date.now()) / 86400000);
  page.replaceChildren(el("h1", {}, "Certificates"),
    table(["Host", "Issuer", "Source", "Expires", "Days left"], answer.certificates.map((c) => el("tr", {},
      el("td", {}, el("code", {}, c.host)),
      el("td", {}, c.issuer),
      el("td", {}, c.source),
      el("td", {}, new Date(c.not_after * 1000).toISOString().slice(0, 10)),
      el("td", { class: days(c.not_after) < 14 ? "status-5xx" : "" }, days(c.not_after))))));
}

// ---------------------------------------------------------------- start

$("#sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("#root-key").value.trim());
  $("#root-key").value = "";
  $("#sign-in-error").textContent = "";
  await render();
});
$("#sign-out").addEventListener("click", () => signOut());
window.addEventListener("hashchange", render);
render();
