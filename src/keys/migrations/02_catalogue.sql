-- Version 2: identities, the permission and role catalogue, and rate-limit
-- overrides (Unkey's identities.*, permissions.*, ratelimit.*Override).
CREATE TABLE identities (
    id TEXT PRIMARY KEY,
    external_id TEXT NOT NULL UNIQUE,
    meta TEXT NOT NULL,
    ratelimits TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX keys_by_external_id ON keys (external_id);
CREATE TABLE permissions (
    id TEXT PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    description TEXT,
    created_at INTEGER NOT NULL
);
CREATE TABLE roles (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT,
    created_at INTEGER NOT NULL
);
CREATE TABLE role_permissions (
    role_id TEXT NOT NULL,
    permission_id TEXT NOT NULL,
    PRIMARY KEY (role_id, permission_id)
);
CREATE TABLE ratelimit_namespaces (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
CREATE TABLE ratelimit_overrides (
    id TEXT PRIMARY KEY,
    namespace_id TEXT NOT NULL,
    identifier TEXT NOT NULL,
    limit_value INTEGER NOT NULL,
    duration INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (namespace_id, identifier)
);
