// Drives Unkey's TypeScript SDKs (@unkey/api, @unkey/ratelimit) against a
// running keygate, exactly as an application would: `serverURL` is the
// admin listener. tests/sdk.rs starts the gateway and this script.
//
// Every method of the SDK's apis, keys, identities, permissions, ratelimit,
// deployments and internal groups (and projects' create, get and list) is
// called and its answer checked, and the typed error classes are checked
// for 400, 401, 403, 404, 409 and 412. The last line of stdout is a JSON report {sdk, methods: {name: "ok" | error}, missing};
// the exit code is 1 when a method failed or was never called.

import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { Unkey } from "@unkey/api";
import * as errors from "@unkey/api/models/errors";
import { Overrides, Ratelimit } from "@unkey/ratelimit";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const serverURL = env("KEYGATE_ADMIN_URL");
const rootKey = env("KEYGATE_ROOT_KEY");
const configApi = env("KEYGATE_CONFIG_API"); // a keyspace from the config file: read-only
const apiKey = env("KEYGATE_API_KEY"); // a key of that keyspace: not a root key
const project = env("KEYGATE_PROJECT"); // a project of the config file (production, preview)
const instance = env("KEYGATE_INSTANCE"); // ip:port of a running upstream

// No retries: a 5xx must show, not be retried away.
const unkey = new Unkey({ serverURL, rootKey, retryConfig: { strategy: "none" } });
const GROUPS = ["apis", "keys", "identities", "permissions", "ratelimit", "deployments", "internal"];
const outcomes = {};

/** Runs one method's checks, recording the outcome under `name` ("keys.getKey"). */
async function step(name, checks) {
  try {
    await checks();
    outcomes[name] ??= "ok";
  } catch (e) {
    outcomes[name] = `${e?.name ?? "Error"}: ${e?.message ?? e}`.slice(0, 2000);
  }
}

/** Asserts `call` fails with the typed error `cls`, status and code; returns the error. */
async function rejects(call, cls, status, code) {
  let caught;
  try {
    await call();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught, `expected ${cls.name}, the call succeeded`);
  assert.ok(caught instanceof cls, `expected ${cls.name}, got ${caught?.constructor?.name}: ${caught?.message}`);
  assert.equal(caught.statusCode, status);
  assert.equal(JSON.parse(caught.body).error.code, code);
  assert.equal(caught.error.status, status);
  return caught;
}

const suffix = `${Date.now()}`;
let apiId;
let keyId;
let plaintext;

await step("apis.createApi", async () => {
  const res = await unkey.apis.createApi({ name: `node-${suffix}` });
  apiId = res.data.apiId;
  assert.match(apiId, /^api_/);
  assert.match(res.meta.requestId, /^req_/);
  await rejects(() => unkey.apis.createApi({ name: "x" }), errors.BadRequestErrorResponse, 400, "err:unkey:application:invalid_input");
});

await step("apis.getApi", async () => {
  const res = await unkey.apis.getApi({ apiId });
  assert.deepEqual(res.data, { id: apiId, name: `node-${suffix}` });
  await rejects(() => unkey.apis.getApi({ apiId: "api_missing" }), errors.NotFoundErrorResponse, 404, "err:unkey:data:api_not_found");
});

// Authentication: no key, an unknown key, an API key.
await step("errors.401", async () => {
  const stranger = new Unkey({ serverURL, rootKey: "not_a_root_key", retryConfig: { strategy: "none" } });
  await rejects(() => stranger.apis.getApi({ apiId }), errors.UnauthorizedErrorResponse, 401, "err:unkey:authentication:key_not_found");
  const anonymous = new Unkey({ serverURL, retryConfig: { strategy: "none" } });
  await rejects(() => anonymous.apis.getApi({ apiId }), errors.UnauthorizedErrorResponse, 401, "err:unkey:authentication:missing");
});
await step("errors.403", async () => {
  const user = new Unkey({ serverURL, rootKey: apiKey, retryConfig: { strategy: "none" } });
  await rejects(() => user.keys.getKey({ keyId: "key_x" }), errors.ForbiddenErrorResponse, 403, "err:unkey:authorization:forbidden");
});

await step("permissions.createPermission", async () => {
  const res = await unkey.permissions.createPermission({ name: "Read documents", slug: "documents.read", description: "read" });
  assert.match(res.data.permissionId, /^perm_/);
  await rejects(
    () => unkey.permissions.createPermission({ name: "again", slug: "documents.read" }),
    errors.ConflictErrorResponse,
    409,
    "err:unkey:data:permission_already_exists",
  );
});
await step("permissions.getPermission", async () => {
  const res = await unkey.permissions.getPermission({ permission: "documents.read" });
  assert.equal(res.data.slug, "documents.read");
  assert.equal(res.data.name, "Read documents");
  assert.equal(res.data.description, "read");
  const byId = await unkey.permissions.getPermission({ permission: res.data.id });
  assert.equal(byId.data.slug, "documents.read");
  await rejects(() => unkey.permissions.getPermission({ permission: "nope" }), errors.NotFoundErrorResponse, 404, "err:unkey:data:permission_not_found");
});
await step("permissions.listPermissions", async () => {
  await unkey.permissions.createPermission({ name: "Write documents", slug: "documents.write" });
  const first = await unkey.permissions.listPermissions({ limit: 1 });
  assert.equal(first.result.data.length, 1);
  assert.equal(first.result.pagination.hasMore, true);
  const slugs = [];
  for await (const page of await unkey.permissions.listPermissions({ limit: 1 })) {
    slugs.push(...page.result.data.map((p) => p.slug));
  }
  assert.deepEqual(slugs.sort(), ["documents.read", "documents.write"]);
  const found = await unkey.permissions.listPermissions({ search: "write" });
  assert.deepEqual(found.result.data.map((p) => p.slug), ["documents.write"]);
});
await step("permissions.createRole", async () => {
  const res = await unkey.permissions.createRole({ name: "editor", description: "edits", permissions: ["documents.write"] });
  assert.match(res.data.roleId, /^role_/);
  await rejects(() => unkey.permissions.createRole({ name: "editor" }), errors.ConflictErrorResponse, 409, "err:unkey:data:role_already_exists");
});
await step("permissions.getRole", async () => {
  const res = await unkey.permissions.getRole({ role: "editor" });
  assert.equal(res.data.name, "editor");
  assert.equal(res.data.description, "edits");
  assert.deepEqual(res.data.permissions.map((p) => p.slug), ["documents.write"]);
  await rejects(() => unkey.permissions.getRole({ role: "nobody" }), errors.NotFoundErrorResponse, 404, "err:unkey:data:role_not_found");
});
await step("permissions.setRolePermissions", async () => {
  const role = await unkey.permissions.getRole({ role: "editor" });
  const res = await unkey.permissions.setRolePermissions({ roleId: role.data.id, permissions: ["documents.write", "documents.delete"] });
  assert.deepEqual(res.data.map((p) => p.slug), ["documents.delete", "documents.write"], "a missing permission is created");
});
await step("permissions.listRoles", async () => {
  await unkey.permissions.createRole({ name: "viewer" });
  const res = await unkey.permissions.listRoles({});
  assert.deepEqual(res.result.data.map((r) => r.name).sort(), ["editor", "viewer"]);
  assert.equal(res.result.pagination.hasMore, false);
});

await step("identities.createIdentity", async () => {
  const res = await unkey.identities.createIdentity({
    externalId: "user_node",
    meta: { plan: "pro" },
    ratelimits: [{ name: "requests", limit: 100, duration: 60000, autoApply: true }],
  });
  assert.match(res.data.identityId, /^id_/);
  await rejects(() => unkey.identities.createIdentity({ externalId: "user_node" }), errors.ConflictErrorResponse, 409, "err:unkey:data:identity_already_exists");
  await rejects(() => unkey.identities.createIdentity({ externalId: "bad id!" }), errors.BadRequestErrorResponse, 400, "err:unkey:application:invalid_input");
});
await step("identities.getIdentity", async () => {
  const res = await unkey.identities.getIdentity({ identity: "user_node" });
  assert.equal(res.data.externalId, "user_node");
  assert.deepEqual(res.data.meta, { plan: "pro" });
  assert.equal(res.data.ratelimits[0].name, "requests");
  assert.equal((await unkey.identities.getIdentity({ identity: res.data.id })).data.externalId, "user_node");
  await rejects(() => unkey.identities.getIdentity({ identity: "ghost" }), errors.NotFoundErrorResponse, 404, "err:unkey:data:identity_not_found");
});
await step("identities.listIdentities", async () => {
  await unkey.identities.createIdentity({ externalId: "user_other" });
  const res = await unkey.identities.listIdentities({ limit: 10 });
  assert.deepEqual(res.result.data.map((i) => i.externalId).sort(), ["user_node", "user_other"]);
  const found = await unkey.identities.listIdentities({ search: "other" });
  assert.deepEqual(found.result.data.map((i) => i.externalId), ["user_other"]);
});
await step("identities.updateIdentity", async () => {
  const res = await unkey.identities.updateIdentity({ identity: "user_node", meta: { plan: "team" } });
  assert.deepEqual(res.data.meta, { plan: "team" });
  assert.equal(res.data.ratelimits.length, 1, "rate limits kept when not sent");
  await rejects(() => unkey.identities.updateIdentity({ identity: "ghost", meta: {} }), errors.NotFoundErrorResponse, 404, "err:unkey:data:identity_not_found");
});

await step("keys.createKey", async () => {
  const res = await unkey.keys.createKey({
    apiId,
    prefix: "node",
    name: "checkout",
    externalId: "user_node",
    meta: { org: "acme" },
    roles: ["editor"],
    permissions: ["documents.read"],
    credits: { remaining: 10, refill: { interval: "daily", amount: 10 } },
    ratelimits: [{ name: "burst", limit: 5, duration: 1000, autoApply: false }],
  });
  keyId = res.data.keyId;
  plaintext = res.data.key;
  assert.match(keyId, /^key_/);
  assert.match(plaintext, /^node_/);
  await rejects(() => unkey.keys.createKey({ apiId: "api_missing" }), errors.NotFoundErrorResponse, 404, "err:unkey:data:api_not_found");
});
await step("keys.getKey", async () => {
  const res = await unkey.keys.getKey({ keyId });
  assert.equal(res.data.keyId, keyId);
  assert.equal(res.data.name, "checkout");
  assert.deepEqual(res.data.meta, { org: "acme" });
  assert.deepEqual(res.data.roles, ["editor"]);
  assert.deepEqual(res.data.permissions, ["documents.read"]);
  assert.equal(res.data.credits.remaining, 10);
  assert.equal(res.data.credits.refill.interval, "daily");
  assert.equal(res.data.identity.externalId, "user_node");
  assert.deepEqual(res.data.identity.meta, { plan: "team" });
  assert.equal(res.data.ratelimits[0].name, "burst");
  await rejects(() => unkey.keys.getKey({ keyId: "key_missing" }), errors.NotFoundErrorResponse, 404, "err:unkey:data:key_not_found");
});
await step("keys.verifyKey", async () => {
  // documents.write comes from the role: a query can require it.
  const res = await unkey.keys.verifyKey({ key: plaintext, permissions: "documents.read AND documents.write" });
  assert.equal(res.data.valid, true);
  assert.equal(res.data.code, "VALID");
  assert.equal(res.data.keyId, keyId);
  assert.equal(res.data.credits, 9);
  assert.deepEqual(res.data.permissions, ["documents.delete", "documents.read", "documents.write"]);
  assert.equal(res.data.identity.externalId, "user_node");
  assert.equal(res.data.ratelimits.find((l) => l.name === "requests").remaining, 99, "the identity's auto-applied limit");
  const denied = await unkey.keys.verifyKey({ key: plaintext, permissions: "admin" });
  assert.equal(denied.data.code, "INSUFFICIENT_PERMISSIONS");
  const missing = await unkey.keys.verifyKey({ key: "node_nope" });
  assert.deepEqual([missing.data.valid, missing.data.code], [false, "NOT_FOUND"]);
  const limited = await unkey.keys.verifyKey({ key: plaintext, credits: { cost: 0 }, ratelimits: [{ name: "burst", cost: 5 }] });
  assert.equal(limited.data.valid, true);
  const over = await unkey.keys.verifyKey({ key: plaintext, credits: { cost: 0 }, ratelimits: [{ name: "burst" }] });
  assert.equal(over.data.code, "RATE_LIMITED");
  await rejects(() => unkey.keys.verifyKey({ key: plaintext, permissions: "a AND" }), errors.BadRequestErrorResponse, 400, "err:unkey:application:invalid_input");
});
await step("keys.whoami", async () => {
  const res = await unkey.keys.whoami({ key: plaintext });
  assert.equal(res.data.keyId, keyId);
  assert.equal(res.data.credits.remaining, 9);
  await rejects(() => unkey.keys.whoami({ key: "node_nope" }), errors.NotFoundErrorResponse, 404, "err:unkey:data:key_not_found");
});
await step("keys.updateKey", async () => {
  await unkey.keys.updateKey({ keyId, name: "renamed", meta: { org: "beta" }, enabled: true });
  const res = await unkey.keys.getKey({ keyId });
  assert.equal(res.data.name, "renamed");
  assert.deepEqual(res.data.meta, { org: "beta" });
  await rejects(() => unkey.keys.updateKey({ keyId: "key_missing", name: "x" }), errors.NotFoundErrorResponse, 404, "err:unkey:data:key_not_found");
});
await step("keys.updateCredits", async () => {
  const res = await unkey.keys.updateCredits({ keyId, operation: "increment", value: 5 });
  assert.equal(res.data.remaining, 14);
  const set = await unkey.keys.updateCredits({ keyId, operation: "set", value: 3 });
  assert.equal(set.data.remaining, 3);
});
await step("keys.addPermissions", async () => {
  const res = await unkey.keys.addPermissions({ keyId, permissions: ["documents.share"] });
  assert.deepEqual(res.data.map((p) => p.slug), ["documents.read", "documents.share"], "a new permission is created");
  assert.equal((await unkey.permissions.getPermission({ permission: "documents.share" })).data.slug, "documents.share");
});
await step("keys.removePermissions", async () => {
  const res = await unkey.keys.removePermissions({ keyId, permissions: ["documents.share"] });
  assert.deepEqual(res.data.map((p) => p.slug), ["documents.read"]);
});
await step("keys.setPermissions", async () => {
  const res = await unkey.keys.setPermissions({ keyId, permissions: ["documents.read", "documents.write"] });
  assert.deepEqual(res.data.map((p) => p.slug), ["documents.read", "documents.write"]);
});
await step("keys.addRoles", async () => {
  const res = await unkey.keys.addRoles({ keyId, roles: ["viewer"] });
  assert.deepEqual(res.data.map((r) => r.name), ["editor", "viewer"]);
  await rejects(() => unkey.keys.addRoles({ keyId, roles: ["ghost"] }), errors.NotFoundErrorResponse, 404, "err:unkey:data:role_not_found");
});
await step("keys.removeRoles", async () => {
  const res = await unkey.keys.removeRoles({ keyId, roles: ["editor"] });
  assert.deepEqual(res.data.map((r) => r.name), ["viewer"]);
});
await step("keys.setRoles", async () => {
  const res = await unkey.keys.setRoles({ keyId, roles: ["editor"] });
  assert.deepEqual(res.data.map((r) => r.name), ["editor"]);
  assert.deepEqual(res.data[0].permissions.map((p) => p.slug), ["documents.delete", "documents.write"]);
});
await step("keys.rerollKey", async () => {
  const res = await unkey.keys.rerollKey({ keyId, expiration: 0 });
  assert.notEqual(res.data.keyId, keyId);
  const old = await unkey.keys.verifyKey({ key: plaintext });
  assert.equal(old.data.code, "EXPIRED");
  keyId = res.data.keyId;
  plaintext = res.data.key;
  assert.equal((await unkey.keys.verifyKey({ key: plaintext })).data.valid, true);
});
await step("keys.migrateKeys", async () => {
  const { createHash } = await import("node:crypto");
  const hash = createHash("sha256").update("legacy_node_key").digest("base64");
  const res = await unkey.keys.migrateKeys({ migrationId: "mig_node", apiId, keys: [{ hash, name: "legacy", permissions: ["documents.read"] }] });
  assert.equal(res.data.migrated.length, 1);
  assert.equal(res.data.migrated[0].hash, hash);
  assert.deepEqual(res.data.failed, []);
  const again = await unkey.keys.migrateKeys({ migrationId: "mig_node", apiId, keys: [{ hash }] });
  assert.deepEqual(again.data.failed, [hash], "an existing hash fails");
  const verified = await unkey.keys.verifyKey({ key: "legacy_node_key", permissions: "documents.read" });
  assert.equal(verified.data.valid, true);
});
await step("apis.listKeys", async () => {
  const res = await unkey.apis.listKeys({ apiId, limit: 1 });
  assert.equal(res.result.data.length, 1);
  assert.equal(res.result.pagination.hasMore, true);
  const ids = [];
  for await (const page of await unkey.apis.listKeys({ apiId, limit: 1 })) {
    ids.push(...page.result.data.map((k) => k.keyId));
  }
  assert.equal(ids.length, 3, "the rerolled key, its successor and the migrated key");
  const mine = await unkey.apis.listKeys({ apiId, externalId: "user_node" });
  assert.equal(mine.result.data.length, 2);
});
await step("keys.deleteKey", async () => {
  await unkey.keys.deleteKey({ keyId });
  assert.equal((await unkey.keys.verifyKey({ key: plaintext })).data.code, "NOT_FOUND");
  await rejects(() => unkey.keys.deleteKey({ keyId }), errors.NotFoundErrorResponse, 404, "err:unkey:data:key_not_found");
});
await step("identities.deleteIdentity", async () => {
  await unkey.identities.deleteIdentity({ identity: "user_other" });
  await rejects(() => unkey.identities.deleteIdentity({ identity: "user_other" }), errors.NotFoundErrorResponse, 404, "err:unkey:data:identity_not_found");
});
await step("permissions.deleteRole", async () => {
  await unkey.permissions.deleteRole({ role: "viewer" });
  await rejects(() => unkey.permissions.getRole({ role: "viewer" }), errors.NotFoundErrorResponse, 404, "err:unkey:data:role_not_found");
});
await step("permissions.deletePermission", async () => {
  await unkey.permissions.deletePermission({ permission: "documents.delete" });
  const role = await unkey.permissions.getRole({ role: "editor" });
  assert.deepEqual(role.data.permissions.map((p) => p.slug), ["documents.write"], "taken from the role too");
  await rejects(() => unkey.permissions.deletePermission({ permission: "documents.delete" }), errors.NotFoundErrorResponse, 404, "err:unkey:data:permission_not_found");
});
await step("apis.deleteApi", async () => {
  await rejects(() => unkey.apis.deleteApi({ apiId: configApi }), errors.PreconditionFailedErrorResponse, 412, "err:unkey:application:protected_resource");
  await unkey.apis.deleteApi({ apiId });
  await rejects(() => unkey.apis.getApi({ apiId }), errors.NotFoundErrorResponse, 404, "err:unkey:data:api_not_found");
});

const namespace = `node-${suffix}`;
await step("ratelimit.limit", async () => {
  const res = await unkey.ratelimit.limit({ namespace, identifier: "alice", limit: 2, duration: 60000 });
  assert.equal(res.data.success, true);
  assert.equal(res.data.remaining, 1);
  assert.ok(res.data.reset > Date.now());
  await rejects(() => unkey.ratelimit.limit({ namespace, identifier: "alice", limit: 0, duration: 60000 }), errors.BadRequestErrorResponse, 400, "err:unkey:application:invalid_input");
});
await step("ratelimit.multiLimit", async () => {
  const res = await unkey.ratelimit.multiLimit([
    { namespace, identifier: "bob", limit: 5, duration: 60000 },
    { namespace, identifier: "carol", limit: 1, duration: 60000, cost: 2 },
  ]);
  assert.equal(res.data.passed, false);
  assert.deepEqual(res.data.limits.map((l) => [l.identifier, l.passed]), [["bob", true], ["carol", false]]);
  const again = await unkey.ratelimit.multiLimit([{ namespace, identifier: "bob", limit: 5, duration: 60000 }]);
  assert.equal(again.data.limits[0].remaining, 4, "a failed multiLimit counts nothing");
});
let overrideId;
await step("ratelimit.setOverride", async () => {
  const res = await unkey.ratelimit.setOverride({ namespace, identifier: "vip_*", limit: 1000, duration: 60000 });
  overrideId = res.data.overrideId;
  assert.ok(overrideId);
  const limited = await unkey.ratelimit.limit({ namespace, identifier: "vip_dave", limit: 1, duration: 60000 });
  assert.deepEqual([limited.data.limit, limited.data.overrideId], [1000, overrideId]);
});
await step("ratelimit.getOverride", async () => {
  const res = await unkey.ratelimit.getOverride({ namespace, identifier: "vip_*" });
  assert.deepEqual(res.data, { overrideId, identifier: "vip_*", limit: 1000, duration: 60000 });
  await rejects(() => unkey.ratelimit.getOverride({ namespace, identifier: "nobody" }), errors.NotFoundErrorResponse, 404, "err:unkey:data:ratelimit_override_not_found");
  await rejects(() => unkey.ratelimit.getOverride({ namespace: "no-such-namespace", identifier: "x" }), errors.NotFoundErrorResponse, 404, "err:unkey:data:ratelimit_namespace_not_found");
});
await step("ratelimit.listOverrides", async () => {
  await unkey.ratelimit.setOverride({ namespace, identifier: "erin", limit: 0, duration: 60000 });
  const res = await unkey.ratelimit.listOverrides({ namespace });
  assert.deepEqual(res.result.data.map((o) => o.identifier).sort(), ["erin", "vip_*"]);
  const blocked = await unkey.ratelimit.limit({ namespace, identifier: "erin", limit: 10, duration: 60000 });
  assert.equal(blocked.data.success, false, "an override of 0 blocks");
});
await step("ratelimit.deleteOverride", async () => {
  await unkey.ratelimit.deleteOverride({ namespace, identifier: "erin" });
  const res = await unkey.ratelimit.limit({ namespace, identifier: "erin", limit: 10, duration: 60000 });
  assert.equal(res.data.success, true);
  await rejects(() => unkey.ratelimit.deleteOverride({ namespace, identifier: "erin" }), errors.NotFoundErrorResponse, 404, "err:unkey:data:ratelimit_override_not_found");
});

// @unkey/ratelimit: its own client (on @unkey/api 2.2) over the same endpoints.
await step("@unkey/ratelimit Ratelimit.limit", async () => {
  const limiter = new Ratelimit({ baseUrl: serverURL, rootKey, namespace: `${namespace}-rl`, limit: 2, duration: "60s", timeout: false });
  assert.equal((await limiter.limit("frank")).success, true);
  assert.equal((await limiter.limit("frank")).remaining, 0);
  assert.equal((await limiter.limit("frank")).success, false);
  const wider = await limiter.limit("frank", { limit: { limit: 10, duration: 60000 } });
  assert.equal(wider.limit, 10);
});
await step("@unkey/ratelimit Overrides", async () => {
  const overrides = new Overrides({ baseUrl: serverURL, rootKey });
  const set = await overrides.setOverride({ namespace: `${namespace}-rl`, identifier: "gina", limit: 7, duration: 60000 });
  const got = await overrides.getOverride({ namespace: `${namespace}-rl`, identifier: "gina" });
  assert.equal(got.data.overrideId, set.data.overrideId);
  // @unkey/ratelimit uses @unkey/api 2.2, whose list answers are not page iterators.
  const listed = await overrides.listOverrides({ namespace: `${namespace}-rl` });
  assert.equal(listed.data.length, 1);
  await overrides.deleteOverride({ namespace: `${namespace}-rl`, identifier: "gina" });
});

// Deployments: projects, Unkey's public deployments API and its internal one.
// The SDKs cannot send keygate's `instances`: they come through keygate's
// own deploy.addInstances, as a CI job or the Docker provider would add them.
async function addInstances(deploymentId) {
  const response = await fetch(`${serverURL}/v2/deploy.addInstances`, {
    method: "POST",
    headers: { authorization: `Bearer ${rootKey}`, "content-type": "application/json" },
    body: JSON.stringify({ deploymentId, instances: [instance] }),
  });
  assert.equal(response.status, 200, await response.text());
}
/** Polls getDeployment (bounded) until `check` holds; returns the deployment. */
async function waitFor(deploymentId, check, what) {
  const deadline = Date.now() + 30000;
  for (;;) {
    const got = (await unkey.deployments.getDeployment({ deploymentId })).data;
    if (check(got)) return got;
    if (Date.now() > deadline) throw new Error(`${deploymentId} never became ${what}: ${JSON.stringify(got)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
let firstDeployment;
let secondDeployment;
let previewDeployment;
await step("projects.createProject", async () => {
  const res = await unkey.projects.createProject({ name: `Node ${suffix}`, slug: `node-${suffix}` });
  assert.match(res.data.id, /^proj_/);
  await rejects(() => unkey.projects.createProject({ name: "again", slug: `node-${suffix}` }), errors.ConflictErrorResponse, 409, "err:unkey:data:conflict");
  const got = await unkey.projects.getProject({ project: `node-${suffix}` });
  assert.deepEqual([got.data.id, got.data.name, got.data.deleteProtection], [res.data.id, `Node ${suffix}`, false]);
});
await step("projects.getProject", async () => {
  const got = await unkey.projects.getProject({ project });
  assert.equal(got.data.id, project);
  assert.equal(got.data.deleteProtection, true, "the file's projects are protected");
});
await step("projects.listProjects", async () => {
  const res = await unkey.projects.listProjects({ search: "node-" });
  assert.deepEqual(res.result.data.map((p) => p.slug), [`node-${suffix}`]);
});
await step("deployments.createDeployment", async () => {
  const res = await unkey.deployments.createDeployment({ project, app: "default", environment: "production", git: { branch: "main", commitSha: "1a2b3c4d5e6f" } });
  firstDeployment = res.data.deploymentId;
  assert.match(firstDeployment, /^d_/);
  await rejects(() => unkey.deployments.createDeployment({ project: "proj_missing", app: "default", environment: "production", image: { dockerImage: "x" } }), errors.NotFoundErrorResponse, 404, "err:unkey:data:project_not_found");
});
await step("deployments.getDeployment", async () => {
  const pending = (await unkey.deployments.getDeployment({ deploymentId: firstDeployment })).data;
  assert.deepEqual([pending.status, pending.isCurrent, pending.availableActions], ["pending", false, []]);
  assert.deepEqual([pending.project, pending.app, pending.environment, pending.git.commitSha, pending.git.branch], [project, "default", "production", "1a2b3c4d5e6f", "main"]);
  assert.deepEqual(pending.regions, ["local"]);
  await addInstances(firstDeployment);
  const live = await waitFor(firstDeployment, (d) => d.isCurrent, "current");
  assert.equal(live.status, "ready");
  assert.ok(live.domains.includes("sdk.kg.test"), JSON.stringify(live.domains));
  assert.equal(live.runtime.port, Number(instance.split(":").pop()));
  await rejects(() => unkey.deployments.getDeployment({ deploymentId: "d_missing" }), errors.NotFoundErrorResponse, 404, "err:unkey:data:deployment_not_found");
});
await step("deployments.listDeployments", async () => {
  secondDeployment = (await unkey.deployments.createDeployment({ project, app: "default", environment: "production", image: { dockerImage: "registry.example/sdk:2" }, git: { branch: "main", commitSha: "9f8e7d6c5b4a" } })).data.deploymentId;
  await addInstances(secondDeployment);
  await waitFor(secondDeployment, (d) => d.isCurrent, "current");
  const res = await unkey.deployments.listDeployments({ project, environment: "production" });
  assert.deepEqual(res.result.data.map((d) => d.id), [secondDeployment, firstDeployment], "newest first");
  const superseded = await unkey.deployments.listDeployments({ project, status: ["superseded"] });
  assert.deepEqual(superseded.result.data.map((d) => [d.id, d.availableActions]), [[firstDeployment, ["promote", "rollback"]]]);
});
await step("deployments.rollbackDeployment", async () => {
  const res = await unkey.deployments.rollbackDeployment({ deploymentId: firstDeployment });
  assert.deepEqual(res.data, {});
  assert.equal((await unkey.deployments.getDeployment({ deploymentId: firstDeployment })).data.isCurrent, true);
  await rejects(() => unkey.deployments.rollbackDeployment({ deploymentId: firstDeployment }), errors.PreconditionFailedErrorResponse, 412, "err:unkey:application:precondition_failed");
});
await step("deployments.promoteDeployment", async () => {
  await unkey.deployments.promoteDeployment({ deploymentId: secondDeployment });
  const got = (await unkey.deployments.getDeployment({ deploymentId: secondDeployment })).data;
  assert.deepEqual([got.isCurrent, got.docker.image], [true, "registry.example/sdk:2"]);
  await rejects(() => unkey.deployments.promoteDeployment({ deploymentId: secondDeployment }), errors.PreconditionFailedErrorResponse, 412, "err:unkey:application:precondition_failed");
});
await step("deployments.stopDeployment", async () => {
  // A redeploy of the second into preview: it copies its instances.
  previewDeployment = (await unkey.deployments.createDeployment({ project, app: "default", environment: "preview", deployment: { deploymentId: secondDeployment } })).data.deploymentId;
  await waitFor(previewDeployment, (d) => d.status === "ready", "ready");
  await unkey.deployments.stopDeployment({ deploymentId: previewDeployment });
  const stopped = (await unkey.deployments.getDeployment({ deploymentId: previewDeployment })).data;
  assert.deepEqual([stopped.status, stopped.availableActions, stopped.domains], ["stopped", ["start"], []]);
  await rejects(() => unkey.deployments.stopDeployment({ deploymentId: previewDeployment }), errors.PreconditionFailedErrorResponse, 412, "err:unkey:application:precondition_failed");
});
await step("deployments.startDeployment", async () => {
  await unkey.deployments.startDeployment({ deploymentId: previewDeployment });
  await waitFor(previewDeployment, (d) => d.status === "ready", "ready again");
  await rejects(() => unkey.deployments.startDeployment({ deploymentId: secondDeployment }), errors.PreconditionFailedErrorResponse, 412, "err:unkey:application:precondition_failed");
});
let internalDeployment;
await step("internal.createDeployment", async () => {
  const res = await unkey.internal.createDeployment({ project, app: "default", branch: "feat/sdk", environmentSlug: "preview", dockerImage: "registry.example/sdk:3", gitCommit: { commitSha: "0badc0ffee", commitMessage: "from the SDK", authorHandle: "dev" } });
  internalDeployment = res.data.deploymentId;
  assert.match(internalDeployment, /^d_/);
});
await step("internal.getDeployment", async () => {
  const got = (await unkey.internal.getDeployment({ deploymentId: internalDeployment })).data;
  assert.deepEqual([got.id, got.status, got.hostnames], [internalDeployment, "PENDING", []]);
  assert.equal(got.steps[0].status, "PENDING");
});

// Every method of the groups must have been called.
const methods = [];
for (const group of GROUPS) {
  const sdk = unkey[group];
  for (const name of Object.getOwnPropertyNames(Object.getPrototypeOf(sdk))) {
    if (name !== "constructor" && typeof sdk[name] === "function") methods.push(`${group}.${name}`);
  }
}
const missing = methods.filter((m) => !(m in outcomes));
const failed = Object.entries(outcomes).filter(([, v]) => v !== "ok");
const version = createRequire(import.meta.url)("@unkey/api/package.json").version;
const working = methods.filter((m) => outcomes[m] === "ok").length;
console.log(JSON.stringify({ sdk: `@unkey/api ${version}`, working, total: methods.length, methods: outcomes, missing }));
process.exit(failed.length || missing.length ? 1 : 0);
