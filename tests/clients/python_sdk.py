"""Drives Unkey's Python SDK (unkey.py) against a running keygate, exactly as
an application would: `server_url` is the admin listener. tests/sdk.rs
starts the gateway and this script.

Every method of the SDK's apis, keys, identities, permissions, ratelimit,
deployments and internal groups (and projects' create, get and list) is called and its answer checked, and the typed error classes are
checked for 400, 401, 403, 404, 409 and 412. The last line of stdout is a
JSON report {sdk, methods: {name: "ok" | error}, missing}; the exit code is
1 when a method failed or was never called.
"""

import base64
import hashlib
import inspect
import json
import os
import sys
import time
import traceback
from importlib.metadata import version

from unkey.py import Unkey, errors
from unkey.py.utils import BackoffStrategy, RetryConfig

SERVER_URL = os.environ["KEYGATE_ADMIN_URL"]
ROOT_KEY = os.environ["KEYGATE_ROOT_KEY"]
CONFIG_API = os.environ["KEYGATE_CONFIG_API"]  # a keyspace from the config file: read-only
API_KEY = os.environ["KEYGATE_API_KEY"]  # a key of that keyspace: not a root key
PROJECT = os.environ["KEYGATE_PROJECT"]  # a project of the config file (production, preview)
INSTANCE = os.environ["KEYGATE_INSTANCE"]  # ip:port of a running upstream

# No retries: a 5xx must show, not be retried away.
NO_RETRIES = RetryConfig("none", BackoffStrategy(1, 1, 1, 1), False)
GROUPS = ["apis", "keys", "identities", "permissions", "ratelimit", "deployments", "internal"]
outcomes = {}


def client(root_key=ROOT_KEY):
    return Unkey(root_key=root_key, server_url=SERVER_URL, retry_config=NO_RETRIES)


unkey = client()


def step(name):
    """Runs the decorated checks at once, recording the outcome under `name` ("keys.get_key")."""

    def run(checks):
        try:
            checks()
            outcomes.setdefault(name, "ok")
        except Exception as e:  # noqa: BLE001 - every failure is reported
            detail = "".join(traceback.format_exception_only(type(e), e)).strip()
            outcomes[name] = f"{detail} at line {traceback.extract_tb(e.__traceback__)[-1].lineno}"[:2000]
        return checks

    return run


def rejects(call, cls, status, code):
    """Asserts `call` raises the typed error `cls` with this status and code; returns it."""
    try:
        call()
    except errors.UnkeyError as e:
        assert isinstance(e, cls), f"expected {cls.__name__}, got {type(e).__name__}: {e}"
        assert e.status_code == status, e.status_code
        assert json.loads(e.body)["error"]["code"] == code, e.body
        assert e.data.error.status == status
        return e
    raise AssertionError(f"expected {cls.__name__}, the call succeeded")


suffix = str(int(time.time() * 1000))
state = {}


@step("apis.create_api")
def _():
    res = unkey.apis.create_api(name=f"py-{suffix}")
    state["api"] = res.data.api_id
    assert state["api"].startswith("api_")
    assert res.meta.request_id.startswith("req_")
    rejects(lambda: unkey.apis.create_api(name="x"), errors.BadRequestErrorResponse, 400, "err:unkey:application:invalid_input")


@step("apis.get_api")
def _():
    res = unkey.apis.get_api(api_id=state["api"])
    assert (res.data.id, res.data.name) == (state["api"], f"py-{suffix}")
    rejects(lambda: unkey.apis.get_api(api_id="api_missing"), errors.NotFoundErrorResponse, 404, "err:unkey:data:api_not_found")


@step("errors.401")
def _():
    rejects(
        lambda: client("not_a_root_key").apis.get_api(api_id=state["api"]),
        errors.UnauthorizedErrorResponse,
        401,
        "err:unkey:authentication:key_not_found",
    )


@step("errors.403")
def _():
    rejects(lambda: client(API_KEY).keys.get_key(key_id="key_x"), errors.ForbiddenErrorResponse, 403, "err:unkey:authorization:forbidden")


@step("permissions.create_permission")
def _():
    res = unkey.permissions.create_permission(name="Read documents", slug="documents.read", description="read")
    assert res.data.permission_id.startswith("perm_")
    rejects(
        lambda: unkey.permissions.create_permission(name="again", slug="documents.read"),
        errors.ConflictErrorResponse,
        409,
        "err:unkey:data:permission_already_exists",
    )


@step("permissions.get_permission")
def _():
    res = unkey.permissions.get_permission(permission="documents.read")
    assert (res.data.slug, res.data.name, res.data.description) == ("documents.read", "Read documents", "read")
    assert unkey.permissions.get_permission(permission=res.data.id).data.slug == "documents.read"
    rejects(lambda: unkey.permissions.get_permission(permission="nope"), errors.NotFoundErrorResponse, 404, "err:unkey:data:permission_not_found")


@step("permissions.list_permissions")
def _():
    unkey.permissions.create_permission(name="Write documents", slug="documents.write")
    page = unkey.permissions.list_permissions(limit=1)
    assert len(page.result.data) == 1 and page.result.pagination.has_more
    slugs = []
    while page is not None:
        slugs += [p.slug for p in page.result.data]
        page = page.next()
    assert sorted(slugs) == ["documents.read", "documents.write"], slugs
    found = unkey.permissions.list_permissions(search="write")
    assert [p.slug for p in found.result.data] == ["documents.write"]


@step("permissions.update_permission")
def _():
    res = unkey.permissions.update_permission(permission="documents.write", name="Write docs", description="write")
    assert (res.data.name, res.data.description) == ("Write docs", "write")
    cleared = unkey.permissions.update_permission(permission="documents.write", description=None)
    assert cleared.data.description is None
    rejects(lambda: unkey.permissions.update_permission(permission="nope", name="x"), errors.NotFoundErrorResponse, 404, "err:unkey:data:permission_not_found")


@step("permissions.create_role")
def _():
    res = unkey.permissions.create_role(name="editor", description="edits", permissions=["documents.write"])
    assert res.data.role_id.startswith("role_")
    rejects(lambda: unkey.permissions.create_role(name="editor"), errors.ConflictErrorResponse, 409, "err:unkey:data:role_already_exists")


@step("permissions.get_role")
def _():
    res = unkey.permissions.get_role(role="editor")
    assert (res.data.name, res.data.description) == ("editor", "edits")
    assert [p.slug for p in res.data.permissions] == ["documents.write"]
    rejects(lambda: unkey.permissions.get_role(role="nobody"), errors.NotFoundErrorResponse, 404, "err:unkey:data:role_not_found")


@step("permissions.set_role_permissions")
def _():
    res = unkey.permissions.set_role_permissions(request={"role": "editor", "permissions": ["documents.write", "documents.delete"]})
    assert [p.slug for p in res.data] == ["documents.delete", "documents.write"], "a missing permission is created"


@step("permissions.update_role")
def _():
    unkey.permissions.create_role(name="reader")
    res = unkey.permissions.update_role(role="reader", name="viewer", description="views")
    assert (res.data.name, res.data.description) == ("viewer", "views")
    rejects(lambda: unkey.permissions.update_role(role="reader", name="x"), errors.NotFoundErrorResponse, 404, "err:unkey:data:role_not_found")


@step("permissions.list_roles")
def _():
    res = unkey.permissions.list_roles()
    assert sorted(r.name for r in res.result.data) == ["editor", "viewer"]
    assert not res.result.pagination.has_more


@step("identities.create_identity")
def _():
    res = unkey.identities.create_identity(
        external_id="user_py",
        meta={"plan": "pro"},
        ratelimits=[{"name": "requests", "limit": 100, "duration": 60000, "auto_apply": True}],
    )
    assert res.data.identity_id.startswith("id_")
    rejects(lambda: unkey.identities.create_identity(external_id="user_py"), errors.ConflictErrorResponse, 409, "err:unkey:data:identity_already_exists")
    rejects(lambda: unkey.identities.create_identity(external_id="bad id!"), errors.BadRequestErrorResponse, 400, "err:unkey:application:invalid_input")


@step("identities.get_identity")
def _():
    res = unkey.identities.get_identity(identity="user_py")
    assert (res.data.external_id, res.data.meta) == ("user_py", {"plan": "pro"})
    assert res.data.ratelimits[0].name == "requests"
    assert unkey.identities.get_identity(identity=res.data.id).data.external_id == "user_py"
    rejects(lambda: unkey.identities.get_identity(identity="ghost"), errors.NotFoundErrorResponse, 404, "err:unkey:data:identity_not_found")


@step("identities.list_identities")
def _():
    unkey.identities.create_identity(external_id="user_other")
    res = unkey.identities.list_identities(limit=10)
    assert sorted(i.external_id for i in res.result.data) == ["user_other", "user_py"]
    found = unkey.identities.list_identities(search="other")
    assert [i.external_id for i in found.result.data] == ["user_other"]


@step("identities.update_identity")
def _():
    res = unkey.identities.update_identity(identity="user_py", meta={"plan": "team"})
    assert res.data.meta == {"plan": "team"}
    assert len(res.data.ratelimits) == 1, "rate limits kept when not sent"
    rejects(lambda: unkey.identities.update_identity(identity="ghost", meta={}), errors.NotFoundErrorResponse, 404, "err:unkey:data:identity_not_found")


@step("keys.create_key")
def _():
    res = unkey.keys.create_key(
        api_id=state["api"],
        prefix="py",
        name="checkout",
        external_id="user_py",
        meta={"org": "acme"},
        roles=["editor"],
        permissions=["documents.read"],
        credits={"remaining": 10, "refill": {"interval": "daily", "amount": 10}},
        ratelimits=[{"name": "burst", "limit": 5, "duration": 1000, "auto_apply": False}],
    )
    state["key_id"], state["key"] = res.data.key_id, res.data.key
    assert state["key_id"].startswith("key_") and state["key"].startswith("py_")
    rejects(lambda: unkey.keys.create_key(api_id="api_missing"), errors.NotFoundErrorResponse, 404, "err:unkey:data:api_not_found")


@step("keys.get_key")
def _():
    data = unkey.keys.get_key(key_id=state["key_id"]).data
    assert (data.key_id, data.name, data.meta) == (state["key_id"], "checkout", {"org": "acme"})
    assert (data.roles, data.permissions) == (["editor"], ["documents.read"])
    assert (data.credits.remaining, data.credits.refill.interval) == (10, "daily")
    assert (data.identity.external_id, data.identity.meta) == ("user_py", {"plan": "team"})
    assert data.ratelimits[0].name == "burst"
    rejects(lambda: unkey.keys.get_key(key_id="key_missing"), errors.NotFoundErrorResponse, 404, "err:unkey:data:key_not_found")


@step("keys.verify_key")
def _():
    # documents.write comes from the role; keyspaces restricts where the key may be.
    data = unkey.keys.verify_key(key=state["key"], permissions="documents.read AND documents.write", keyspaces=[state["api"]]).data
    assert (data.valid, data.code, data.key_id, data.credits) == (True, "VALID", state["key_id"], 9), data
    assert data.permissions == ["documents.delete", "documents.read", "documents.write"]
    assert next(l for l in data.ratelimits if l.name == "requests").remaining == 99, "the identity's auto-applied limit"
    elsewhere = unkey.keys.verify_key(key=state["key"], keyspaces=[CONFIG_API]).data
    assert (elsewhere.valid, elsewhere.code) == (False, "NOT_FOUND")
    assert unkey.keys.verify_key(key=state["key"], permissions="admin").data.code == "INSUFFICIENT_PERMISSIONS"
    assert unkey.keys.verify_key(key="py_nope", tags=["a=b"]).data.code == "NOT_FOUND"
    limited = unkey.keys.verify_key(key=state["key"], credits={"cost": 0}, ratelimits=[{"name": "burst", "cost": 5}]).data
    assert limited.valid
    over = unkey.keys.verify_key(key=state["key"], credits={"cost": 0}, ratelimits=[{"name": "burst"}]).data
    assert over.code == "RATE_LIMITED"
    rejects(lambda: unkey.keys.verify_key(key=state["key"], permissions="a AND"), errors.BadRequestErrorResponse, 400, "err:unkey:application:invalid_input")


@step("keys.whoami")
def _():
    data = unkey.keys.whoami(key=state["key"]).data
    assert (data.key_id, data.credits.remaining) == (state["key_id"], 9)
    rejects(lambda: unkey.keys.whoami(key="py_nope"), errors.NotFoundErrorResponse, 404, "err:unkey:data:key_not_found")


@step("keys.update_key")
def _():
    unkey.keys.update_key(key_id=state["key_id"], name="renamed", meta={"org": "beta"}, enabled=True)
    data = unkey.keys.get_key(key_id=state["key_id"]).data
    assert (data.name, data.meta) == ("renamed", {"org": "beta"})
    rejects(lambda: unkey.keys.update_key(key_id="key_missing", name="x"), errors.NotFoundErrorResponse, 404, "err:unkey:data:key_not_found")


@step("keys.update_credits")
def _():
    assert unkey.keys.update_credits(key_id=state["key_id"], operation="increment", value=5).data.remaining == 14
    assert unkey.keys.update_credits(key_id=state["key_id"], operation="set", value=3).data.remaining == 3


@step("keys.add_permissions")
def _():
    res = unkey.keys.add_permissions(key_id=state["key_id"], permissions=["documents.share"])
    assert [p.slug for p in res.data] == ["documents.read", "documents.share"], "a new permission is created"


@step("keys.remove_permissions")
def _():
    res = unkey.keys.remove_permissions(key_id=state["key_id"], permissions=["documents.share"])
    assert [p.slug for p in res.data] == ["documents.read"]


@step("keys.set_permissions")
def _():
    res = unkey.keys.set_permissions(key_id=state["key_id"], permissions=["documents.read", "documents.write"])
    assert [p.slug for p in res.data] == ["documents.read", "documents.write"]


@step("keys.add_roles")
def _():
    res = unkey.keys.add_roles(key_id=state["key_id"], roles=["viewer"])
    assert [r.name for r in res.data] == ["editor", "viewer"]
    rejects(lambda: unkey.keys.add_roles(key_id=state["key_id"], roles=["ghost"]), errors.NotFoundErrorResponse, 404, "err:unkey:data:role_not_found")


@step("keys.remove_roles")
def _():
    res = unkey.keys.remove_roles(key_id=state["key_id"], roles=["editor"])
    assert [r.name for r in res.data] == ["viewer"]


@step("keys.set_roles")
def _():
    res = unkey.keys.set_roles(key_id=state["key_id"], roles=["editor"])
    assert [r.name for r in res.data] == ["editor"]
    assert [p.slug for p in res.data[0].permissions] == ["documents.delete", "documents.write"]


@step("keys.reroll_key")
def _():
    res = unkey.keys.reroll_key(key_id=state["key_id"], expiration=0)
    assert res.data.key_id != state["key_id"]
    assert unkey.keys.verify_key(key=state["key"]).data.code == "EXPIRED"
    state["key_id"], state["key"] = res.data.key_id, res.data.key
    assert unkey.keys.verify_key(key=state["key"]).data.valid


@step("keys.migrate_keys")
def _():
    digest = hashlib.sha256(b"legacy_py_key").digest()
    hex_hash, b64_hash = digest.hex(), base64.b64encode(digest).decode()
    res = unkey.keys.migrate_keys(
        migration_id="mig_py",
        api_id=state["api"],
        keys=[{"hash": hex_hash, "name": "legacy", "permissions": ["documents.read"]}],
    )
    assert [m.hash for m in res.data.migrated] == [hex_hash] and res.data.failed == []
    again = unkey.keys.migrate_keys(migration_id="mig_py", api_id=state["api"], keys=[{"hash": b64_hash}])
    assert again.data.failed == [b64_hash], "an existing hash fails, whatever its encoding"
    assert unkey.keys.verify_key(key="legacy_py_key", permissions="documents.read").data.valid


@step("apis.list_keys")
def _():
    page = unkey.apis.list_keys(api_id=state["api"], limit=1)
    assert len(page.result.data) == 1 and page.result.pagination.has_more
    ids = []
    while page is not None:
        ids += [k.key_id for k in page.result.data]
        page = page.next()
    assert len(ids) == 3, "the rerolled key, its successor and the migrated key"
    assert len(unkey.apis.list_keys(api_id=state["api"], external_id="user_py").result.data) == 2


@step("keys.delete_key")
def _():
    unkey.keys.delete_key(key_id=state["key_id"])
    assert unkey.keys.verify_key(key=state["key"]).data.code == "NOT_FOUND"
    rejects(lambda: unkey.keys.delete_key(key_id=state["key_id"]), errors.NotFoundErrorResponse, 404, "err:unkey:data:key_not_found")


@step("identities.delete_identity")
def _():
    unkey.identities.delete_identity(identity="user_other")
    rejects(lambda: unkey.identities.delete_identity(identity="user_other"), errors.NotFoundErrorResponse, 404, "err:unkey:data:identity_not_found")


@step("permissions.delete_role")
def _():
    unkey.permissions.delete_role(role="viewer")
    rejects(lambda: unkey.permissions.get_role(role="viewer"), errors.NotFoundErrorResponse, 404, "err:unkey:data:role_not_found")


@step("permissions.delete_permission")
def _():
    unkey.permissions.delete_permission(permission="documents.delete")
    role = unkey.permissions.get_role(role="editor").data
    assert [p.slug for p in role.permissions] == ["documents.write"], "taken from the role too"
    rejects(
        lambda: unkey.permissions.delete_permission(permission="documents.delete"),
        errors.NotFoundErrorResponse,
        404,
        "err:unkey:data:permission_not_found",
    )


@step("apis.delete_api")
def _():
    rejects(
        lambda: unkey.apis.delete_api(api_id=CONFIG_API),
        errors.PreconditionFailedErrorResponse,
        412,
        "err:unkey:application:protected_resource",
    )
    unkey.apis.delete_api(api_id=state["api"])
    rejects(lambda: unkey.apis.get_api(api_id=state["api"]), errors.NotFoundErrorResponse, 404, "err:unkey:data:api_not_found")


NAMESPACE = f"py-{suffix}"


@step("ratelimit.limit")
def _():
    data = unkey.ratelimit.limit(namespace=NAMESPACE, identifier="alice", limit=2, duration=60000).data
    assert (data.success, data.remaining) == (True, 1) and data.reset > time.time() * 1000
    rejects(
        lambda: unkey.ratelimit.limit(namespace=NAMESPACE, identifier="alice", limit=0, duration=60000),
        errors.BadRequestErrorResponse,
        400,
        "err:unkey:application:invalid_input",
    )


@step("ratelimit.multi_limit")
def _():
    data = unkey.ratelimit.multi_limit(
        request=[
            {"namespace": NAMESPACE, "identifier": "bob", "limit": 5, "duration": 60000},
            {"namespace": NAMESPACE, "identifier": "carol", "limit": 1, "duration": 60000, "cost": 2},
        ]
    ).data
    assert not data.passed
    assert [(l.identifier, l.passed) for l in data.limits] == [("bob", True), ("carol", False)]
    again = unkey.ratelimit.multi_limit(request=[{"namespace": NAMESPACE, "identifier": "bob", "limit": 5, "duration": 60000}])
    assert again.data.limits[0].remaining == 4, "a failed multiLimit counts nothing"


@step("ratelimit.set_override")
def _():
    state["override"] = unkey.ratelimit.set_override(namespace=NAMESPACE, identifier="vip_*", limit=1000, duration=60000).data.override_id
    data = unkey.ratelimit.limit(namespace=NAMESPACE, identifier="vip_dave", limit=1, duration=60000).data
    assert (data.limit, data.override_id) == (1000, state["override"])


@step("ratelimit.get_override")
def _():
    data = unkey.ratelimit.get_override(namespace=NAMESPACE, identifier="vip_*").data
    assert (data.override_id, data.identifier, data.limit, data.duration) == (state["override"], "vip_*", 1000, 60000)
    rejects(
        lambda: unkey.ratelimit.get_override(namespace=NAMESPACE, identifier="nobody"),
        errors.NotFoundErrorResponse,
        404,
        "err:unkey:data:ratelimit_override_not_found",
    )


@step("ratelimit.list_overrides")
def _():
    unkey.ratelimit.set_override(namespace=NAMESPACE, identifier="erin", limit=0, duration=60000)
    page = unkey.ratelimit.list_overrides(namespace=NAMESPACE)
    assert sorted(o.identifier for o in page.result.data) == ["erin", "vip_*"]
    assert not unkey.ratelimit.limit(namespace=NAMESPACE, identifier="erin", limit=10, duration=60000).data.success


@step("ratelimit.delete_override")
def _():
    unkey.ratelimit.delete_override(namespace=NAMESPACE, identifier="erin")
    assert unkey.ratelimit.limit(namespace=NAMESPACE, identifier="erin", limit=10, duration=60000).data.success
    rejects(
        lambda: unkey.ratelimit.delete_override(namespace=NAMESPACE, identifier="erin"),
        errors.NotFoundErrorResponse,
        404,
        "err:unkey:data:ratelimit_override_not_found",
    )

# Deployments: projects, Unkey's public deployments API and its internal one.
# The SDK cannot send keygate's `instances`: they come through keygate's own
# deploy.addInstances, as a CI job or the Docker provider would add them.
def add_instances(deployment_id):
    import urllib.request

    request = urllib.request.Request(
        f"{SERVER_URL}/v2/deploy.addInstances",
        data=json.dumps({"deploymentId": deployment_id, "instances": [INSTANCE]}).encode(),
        headers={"authorization": f"Bearer {ROOT_KEY}", "content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200, response.read()


def wait_for(deployment_id, check, what):
    """Polls get_deployment (bounded) until `check` holds; returns the deployment."""
    deadline = time.monotonic() + 30
    while True:
        got = unkey.deployments.get_deployment(deployment_id=deployment_id).data
        if check(got):
            return got
        assert time.monotonic() < deadline, f"{deployment_id} never became {what}: {got}"
        time.sleep(0.1)


@step("projects.create_project")
def _():
    created = unkey.projects.create_project(name=f"Py {suffix}", slug=f"py-{suffix}").data
    assert created.id.startswith("proj_")
    rejects(lambda: unkey.projects.create_project(name="again", slug=f"py-{suffix}"), errors.ConflictErrorResponse, 409, "err:unkey:data:conflict")
    got = unkey.projects.get_project(project=f"py-{suffix}").data
    assert (got.id, got.name, got.delete_protection) == (created.id, f"Py {suffix}", False)


@step("projects.get_project")
def _():
    got = unkey.projects.get_project(project=PROJECT).data
    assert (got.id, got.delete_protection) == (PROJECT, True)


@step("projects.list_projects")
def _():
    page = unkey.projects.list_projects(search="py-")
    assert [p.slug for p in page.result.data] == [f"py-{suffix}"]


@step("deployments.create_deployment")
def _():
    state["first"] = unkey.deployments.create_deployment(
        request={"project": PROJECT, "app": "default", "environment": "production", "git": {"branch": "main", "commitSha": "1a2b3c4d5e6f"}}
    ).data.deployment_id
    assert state["first"].startswith("d_")
    rejects(
        lambda: unkey.deployments.create_deployment(request={"project": "proj_missing", "app": "default", "environment": "production", "image": {"dockerImage": "x"}}),
        errors.NotFoundErrorResponse,
        404,
        "err:unkey:data:project_not_found",
    )


@step("deployments.get_deployment")
def _():
    pending = unkey.deployments.get_deployment(deployment_id=state["first"]).data
    assert (pending.status, pending.is_current, pending.available_actions) == ("pending", False, []), pending
    assert (pending.trigger.via, pending.trigger.actor.type) == ("api", "root_key"), pending.trigger
    add_instances(state["first"])
    live = wait_for(state["first"], lambda d: d.is_current, "current")
    assert live.status == "ready" and "sdk.kg.test" in live.domains, live
    assert live.runtime.port == int(INSTANCE.rsplit(":", 1)[1])
    rejects(lambda: unkey.deployments.get_deployment(deployment_id="d_missing"), errors.NotFoundErrorResponse, 404, "err:unkey:data:deployment_not_found")


@step("deployments.create_deployment_v3")
def _():
    state["second"] = unkey.deployments.create_deployment_v3(
        project=PROJECT, app="default", environment="production", oci={"image": "registry.example/sdk:2"}, git={"branch": "main", "commitSha": "9f8e7d6c5b4a"}
    ).data.deployment_id
    add_instances(state["second"])
    got = wait_for(state["second"], lambda d: d.is_current, "current")
    assert got.docker.image == "registry.example/sdk:2"


@step("deployments.list_deployments")
def _():
    page = unkey.deployments.list_deployments(project=PROJECT, environment="production", branch=["main"])
    assert [d.id for d in page.result.data] == [state["second"], state["first"]], "newest first"
    superseded = unkey.deployments.list_deployments(project=PROJECT, status=["superseded"]).result.data
    assert [(d.id, d.available_actions) for d in superseded] == [(state["first"], ["promote", "rollback"])]


@step("deployments.list_build_logs")
def _():
    assert unkey.deployments.list_build_logs(deployment_id=state["first"]).data == [], "keygate builds nothing"


@step("deployments.rollback_deployment")
def _():
    unkey.deployments.rollback_deployment(deployment_id=state["first"])
    assert unkey.deployments.get_deployment(deployment_id=state["first"]).data.is_current
    rejects(
        lambda: unkey.deployments.rollback_deployment(deployment_id=state["first"]),
        errors.PreconditionFailedErrorResponse,
        412,
        "err:unkey:application:precondition_failed",
    )


@step("deployments.promote_deployment")
def _():
    unkey.deployments.promote_deployment(deployment_id=state["second"])
    assert unkey.deployments.get_deployment(deployment_id=state["second"]).data.is_current


@step("deployments.stop_deployment")
def _():
    # A redeploy of the second into preview: it copies its instances.
    state["preview"] = unkey.deployments.create_deployment(
        request={"project": PROJECT, "app": "default", "environment": "preview", "deployment": {"deploymentId": state["second"]}}
    ).data.deployment_id
    wait_for(state["preview"], lambda d: d.status == "ready", "ready")
    unkey.deployments.stop_deployment(deployment_id=state["preview"])
    stopped = unkey.deployments.get_deployment(deployment_id=state["preview"]).data
    assert (stopped.status, stopped.available_actions) == ("stopped", ["start"]), stopped


@step("deployments.start_deployment")
def _():
    unkey.deployments.start_deployment(deployment_id=state["preview"])
    wait_for(state["preview"], lambda d: d.status == "ready", "ready again")


@step("internal.create_deployment")
def _():
    state["internal"] = unkey.internal.create_deployment(
        project=PROJECT, app="default", branch="feat/sdk", environment_slug="preview", docker_image="registry.example/sdk:3", git_commit={"commitSha": "0badc0ffee"}
    ).data.deployment_id
    assert state["internal"].startswith("d_")


@step("internal.get_deployment")
def _():
    got = unkey.internal.get_deployment(deployment_id=state["internal"]).data
    assert (got.id, got.status, got.hostnames) == (state["internal"], "PENDING", []), got
    assert got.steps[0].status == "PENDING"


def sdk_methods():
    """Every public synchronous method of the groups (`*_async` twins share their code)."""
    names = []
    for group in GROUPS:
        sdk = getattr(unkey, group)
        for name, member in inspect.getmembers(type(sdk), inspect.isfunction):
            if not name.startswith("_") and not name.endswith("_async") and member.__module__ == type(sdk).__module__:
                names.append(f"{group}.{name}")
    return names


methods = sdk_methods()
missing = [m for m in methods if m not in outcomes]
failed = [name for name, outcome in outcomes.items() if outcome != "ok"]
working = sum(1 for m in methods if outcomes.get(m) == "ok")
report = {"sdk": f"unkey.py {version('unkey.py')}", "working": working, "total": len(methods), "methods": outcomes, "missing": missing}
print(json.dumps(report))
sys.exit(1 if failed or missing else 0)
