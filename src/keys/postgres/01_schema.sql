-- Version 1: the embedded store's schema (its versions 1 and 2) in
-- PostgreSQL: keyspaces, keys (SHA-256 hashes only, never the key), credit
-- balances, identities, the permission and role catalogue, and rate-limit
-- overrides. Released migrations are never edited: a change is a new file,
-- appended to MIGRATIONS in postgres/mod.rs.
CREATE TABLE keyspaces (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE keys (
    id TEXT PRIMARY KEY,
    keyspace_id TEXT NOT NULL,
    hash BYTEA NOT NULL UNIQUE,
    external_id TEXT,
    record TEXT NOT NULL,
    deleted_at BIGINT
);
CREATE INDEX keys_by_keyspace ON keys (keyspace_id, id);
CREATE INDEX keys_by_external_id ON keys (external_id);
CREATE TABLE credits (
    key_id TEXT PRIMARY KEY,
    remaining BIGINT NOT NULL,
    period BIGINT NOT NULL,
    origin TEXT
);
CREATE TABLE identities (
    id TEXT PRIMARY KEY,
    external_id TEXT NOT NULL UNIQUE,
    meta TEXT NOT NULL,
    ratelimits TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE permissions (
    id TEXT PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    description TEXT,
    created_at BIGINT NOT NULL
);
CREATE TABLE roles (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT,
    created_at BIGINT NOT NULL
);
CREATE TABLE role_permissions (
    role_id TEXT NOT NULL,
    permission_id TEXT NOT NULL,
    PRIMARY KEY (role_id, permission_id)
);
CREATE TABLE ratelimit_namespaces (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);
CREATE TABLE ratelimit_overrides (
    id TEXT PRIMARY KEY,
    namespace_id TEXT NOT NULL,
    identifier TEXT NOT NULL,
    limit_value BIGINT NOT NULL,
    duration BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (namespace_id, identifier)
);
