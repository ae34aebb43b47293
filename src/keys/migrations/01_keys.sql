-- Version 1: keyspaces, keys and credit balances.
--
-- This is the schema keygate created before it numbered versions (such a
-- database has user_version 0). IF NOT EXISTS makes this migration a no-op
-- on one, so it opens at version 1 with its data. Released migrations are
-- never edited: a change is a new file, appended to MIGRATIONS in sqlite.rs.
CREATE TABLE IF NOT EXISTS keyspaces (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,
    keyspace_id TEXT NOT NULL,
    hash BLOB NOT NULL UNIQUE,
    external_id TEXT,
    record TEXT NOT NULL,
    deleted_at INTEGER
);
CREATE INDEX IF NOT EXISTS keys_by_keyspace ON keys (keyspace_id, id);
CREATE TABLE IF NOT EXISTS credits (
    key_id TEXT PRIMARY KEY,
    remaining INTEGER NOT NULL,
    period INTEGER NOT NULL,
    origin TEXT
);
