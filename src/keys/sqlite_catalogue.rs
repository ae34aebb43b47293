//! The catalogue in the embedded store: identities, permissions, roles,
//! rate-limit namespaces and overrides, next to the keys in `keys.db`.
//!
//! Keys refer to identities by externalId and to roles and permissions by
//! name (their records hold the names), so a rename or a deletion rewrites
//! the records of the keys concerned in the same transaction.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};
use serde_json::{Map, Value};

use super::catalogue::{CatalogueStore, Namespace, Page, Permission, Role};
use super::model::{new_id, normalized, Identity, KeyRecord, RateLimit};
use super::sqlite::{decode_record, encode, lock, SqliteStore};
use super::store::StoreError;
use crate::ratelimit::overrides::Override;

const IDENTITY_COLUMNS: &str = "external_id, meta, ratelimits FROM identities";
const PERMISSION_COLUMNS: &str = "id, slug, name, description, created_at FROM permissions";
const ROLE_COLUMNS: &str = "id, name, description, created_at FROM roles";
const OVERRIDE_COLUMNS: &str =
    "o.id, n.name, o.identifier, o.limit_value, o.duration FROM ratelimit_overrides o JOIN ratelimit_namespaces n ON n.id = o.namespace_id";

fn corrupt(what: &str, error: serde_json::Error) -> StoreError {
    StoreError::Corrupt {
        id: what.to_string(),
        message: error.to_string(),
    }
}

/// Puts an identity row's meta and rate limits (JSON) into `identity`.
pub(super) fn fill_identity(identity: &mut Identity, meta: &str, ratelimits: &str) -> Result<(), StoreError> {
    identity.meta = serde_json::from_str::<Map<String, Value>>(meta).map_err(|e| corrupt(&identity.external_id, e))?;
    identity.ratelimits =
        serde_json::from_str::<Vec<RateLimit>>(ratelimits).map_err(|e| corrupt(&identity.external_id, e))?;
    Ok(())
}

fn identity_row(row: &Row<'_>) -> Result<Result<Identity, StoreError>, rusqlite::Error> {
    let mut identity = Identity::new(row.get(0)?);
    let (meta, limits): (String, String) = (row.get(1)?, row.get(2)?);
    Ok(fill_identity(&mut identity, &meta, &limits).map(|()| identity))
}

pub(super) fn identity_json(identity: &Identity) -> Result<(String, String), StoreError> {
    let meta = serde_json::to_string(&identity.meta).map_err(|e| corrupt(&identity.external_id, e))?;
    let limits = serde_json::to_string(&identity.ratelimits).map_err(|e| corrupt(&identity.external_id, e))?;
    Ok((meta, limits))
}

fn permission_row(row: &Row<'_>) -> Result<Permission, rusqlite::Error> {
    Ok(Permission {
        id: row.get(0)?,
        slug: row.get(1)?,
        name: row.get(2)?,
        description: row.get(3)?,
        created_at: row.get(4)?,
    })
}

fn role_row(row: &Row<'_>) -> Result<Role, rusqlite::Error> {
    Ok(Role {
        id: row.get(0)?,
        name: row.get(1)?,
        description: row.get(2)?,
        created_at: row.get(3)?,
        permissions: Vec::new(),
    })
}

fn override_row(row: &Row<'_>) -> Result<Override, rusqlite::Error> {
    Ok(Override {
        id: row.get(0)?,
        namespace: row.get(1)?,
        identifier: row.get(2)?,
        limit: row.get::<_, i64>(3)?.max(0) as u64,
        duration_ms: row.get::<_, i64>(4)?.max(0) as u64,
    })
}

/// Runs a query with positional parameters and collects its rows.
fn collect<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl FnMut(&Row<'_>) -> Result<T, rusqlite::Error>,
) -> Result<Vec<T>, StoreError> {
    let mut statement = conn.prepare(sql)?;
    let rows = statement.query_map(params, map)?;
    Ok(rows.collect::<Result<Vec<T>, _>>()?)
}

/// The permissions of a role, sorted by slug.
fn role_permissions(conn: &Connection, role_id: &str) -> Result<Vec<Permission>, StoreError> {
    collect(
        conn,
        "SELECT p.id, p.slug, p.name, p.description, p.created_at FROM role_permissions rp
         JOIN permissions p ON p.id = rp.permission_id WHERE rp.role_id = ?1 ORDER BY p.slug",
        [role_id],
        permission_row,
    )
}

fn with_permissions(conn: &Connection, mut role: Role) -> Result<Role, StoreError> {
    role.permissions = role_permissions(conn, &role.id)?;
    Ok(role)
}

/// The keys holding `name` in the record list at `$.<list>` (`roles` or `permissions`).
fn holding(list: &str) -> String {
    format!("EXISTS (SELECT 1 FROM json_each(keys.record, '$.{list}') WHERE value = ?1)")
}

/// Rewrites, with `change`, the records of the live keys `filter` selects
/// (`?1` bound to `param`).
fn rewrite_keys(
    tx: &Transaction<'_>,
    filter: &str,
    param: &str,
    change: impl Fn(&mut KeyRecord),
) -> Result<(), StoreError> {
    let rows = collect(
        tx,
        &format!("SELECT id, record FROM keys WHERE deleted_at IS NULL AND {filter}"),
        [param],
        |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)),
    )?;
    for (id, text) in rows {
        let mut record = decode_record(&text)?;
        change(&mut record);
        let external_id = record.identity.as_ref().map(|i| i.external_id.clone());
        tx.execute(
            "UPDATE keys SET record = ?2, external_id = ?3 WHERE id = ?1",
            params![id, encode(&record)?, external_id],
        )?;
    }
    Ok(())
}

/// `list` with `from` renamed to `to` (`None`: removed), sorted and unique.
pub(super) fn renamed(list: &mut Vec<String>, from: &str, to: Option<&str>) {
    let changed: Vec<String> = list
        .drain(..)
        .filter_map(|item| {
            if item == from {
                to.map(str::to_string)
            } else {
                Some(item)
            }
        })
        .collect();
    *list = normalized(changed);
}

fn one<T>(
    conn: &Connection,
    sql: &str,
    param: &str,
    map: impl FnOnce(&Row<'_>) -> Result<T, rusqlite::Error>,
) -> Result<Option<T>, StoreError> {
    Ok(conn.query_row(sql, [param], map).optional()?)
}

/// `Conflict(what)` when an insert hit a unique constraint.
fn inserted(result: Result<usize, rusqlite::Error>, what: String) -> Result<(), StoreError> {
    match result {
        Ok(_) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
            Err(StoreError::Conflict(what))
        }
        Err(e) => Err(e.into()),
    }
}

fn changed(count: usize) -> Result<(), StoreError> {
    if count == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

impl CatalogueStore for SqliteStore {
    fn create_identity(&self, identity: &Identity, now_ms: i64) -> Result<(), StoreError> {
        let (meta, limits) = identity_json(identity)?;
        let conn = lock(&self.writer);
        inserted(
            conn.execute(
                "INSERT INTO identities (id, external_id, meta, ratelimits, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![identity.id(), identity.external_id, meta, limits, now_ms],
            ),
            format!("identity {}", identity.external_id),
        )
    }

    fn ensure_identity(&self, external_id: &str, now_ms: i64) -> Result<(), StoreError> {
        let identity = Identity::new(external_id.to_string());
        let conn = lock(&self.writer);
        conn.execute(
            "INSERT INTO identities (id, external_id, meta, ratelimits, created_at) VALUES (?1, ?2, '{}', '[]', ?3)
             ON CONFLICT DO NOTHING",
            params![identity.id(), external_id, now_ms],
        )?;
        Ok(())
    }

    fn identity(&self, id_or_external_id: &str) -> Result<Option<Identity>, StoreError> {
        let conn = lock(&self.writer);
        let sql = format!("SELECT {IDENTITY_COLUMNS} WHERE id = ?1 OR external_id = ?1");
        one(&conn, &sql, id_or_external_id, identity_row)?.transpose()
    }

    fn list_identities(&self, page: Page<'_>) -> Result<Vec<Identity>, StoreError> {
        let conn = lock(&self.writer);
        let sql = format!(
            "SELECT {IDENTITY_COLUMNS} WHERE id > ?1 AND (?2 IS NULL OR instr(external_id, ?2) > 0) ORDER BY id LIMIT ?3"
        );
        let rows = collect(
            &conn,
            &sql,
            params![page.cursor.unwrap_or(""), page.search, page.limit as i64],
            identity_row,
        )?;
        rows.into_iter().collect()
    }

    fn update_identity(&self, identity: &Identity) -> Result<(), StoreError> {
        let (meta, limits) = identity_json(identity)?;
        let conn = lock(&self.writer);
        changed(conn.execute(
            "UPDATE identities SET meta = ?2, ratelimits = ?3 WHERE external_id = ?1",
            params![identity.external_id, meta, limits],
        )?)
    }

    fn delete_identity(&self, external_id: &str) -> Result<(), StoreError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction()?;
        changed(tx.execute("DELETE FROM identities WHERE external_id = ?1", [external_id])?)?;
        rewrite_keys(&tx, "external_id = ?1", external_id, |record| record.identity = None)?;
        tx.commit()?;
        Ok(())
    }

    fn create_permission(&self, permission: &Permission) -> Result<(), StoreError> {
        let conn = lock(&self.writer);
        inserted(
            conn.execute(
                "INSERT INTO permissions (id, slug, name, description, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    permission.id,
                    permission.slug,
                    permission.name,
                    permission.description,
                    permission.created_at
                ],
            ),
            format!("permission {}", permission.slug),
        )
    }

    fn ensure_permissions(&self, slugs: &[String], now_ms: i64) -> Result<Vec<Permission>, StoreError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction()?;
        let mut found = Vec::with_capacity(slugs.len());
        for slug in normalized(slugs.to_vec()) {
            let fresh = Permission::named_after(&slug, now_ms);
            tx.execute(
                "INSERT INTO permissions (id, slug, name, description, created_at) VALUES (?1, ?2, ?3, NULL, ?4)
                 ON CONFLICT DO NOTHING",
                params![fresh.id, fresh.slug, fresh.name, now_ms],
            )?;
            let sql = format!("SELECT {PERMISSION_COLUMNS} WHERE slug = ?1");
            found.extend(one(&tx, &sql, &slug, permission_row)?);
        }
        tx.commit()?;
        Ok(found)
    }

    fn permission(&self, id_or_slug: &str) -> Result<Option<Permission>, StoreError> {
        let conn = lock(&self.writer);
        one(
            &conn,
            &format!("SELECT {PERMISSION_COLUMNS} WHERE id = ?1 OR slug = ?1"),
            id_or_slug,
            permission_row,
        )
    }

    fn list_permissions(&self, page: Page<'_>) -> Result<Vec<Permission>, StoreError> {
        let conn = lock(&self.writer);
        let sql = format!(
            "SELECT {PERMISSION_COLUMNS} WHERE id > ?1 AND (?2 IS NULL OR instr(slug, ?2) > 0 OR instr(name, ?2) > 0)
             ORDER BY id LIMIT ?3"
        );
        collect(
            &conn,
            &sql,
            params![page.cursor.unwrap_or(""), page.search, page.limit as i64],
            permission_row,
        )
    }

    fn update_permission(&self, before: &Permission, after: &Permission) -> Result<(), StoreError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction()?;
        let result = tx.execute(
            "UPDATE permissions SET slug = ?2, name = ?3, description = ?4 WHERE id = ?1",
            params![before.id, after.slug, after.name, after.description],
        );
        inserted(result, format!("permission {}", after.slug))?;
        if before.slug != after.slug {
            rewrite_keys(&tx, &holding("permissions"), &before.slug, |record| {
                renamed(&mut record.permissions, &before.slug, Some(&after.slug))
            })?;
        }
        tx.commit()?;
        Ok(())
    }

    fn delete_permission(&self, permission: &Permission) -> Result<(), StoreError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction()?;
        changed(tx.execute("DELETE FROM permissions WHERE id = ?1", [&permission.id])?)?;
        tx.execute(
            "DELETE FROM role_permissions WHERE permission_id = ?1",
            [&permission.id],
        )?;
        rewrite_keys(&tx, &holding("permissions"), &permission.slug, |record| {
            renamed(&mut record.permissions, &permission.slug, None)
        })?;
        tx.commit()?;
        Ok(())
    }

    fn create_role(&self, role: &Role) -> Result<(), StoreError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction()?;
        inserted(
            tx.execute(
                "INSERT INTO roles (id, name, description, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![role.id, role.name, role.description, role.created_at],
            ),
            format!("role {}", role.name),
        )?;
        for permission in &role.permissions {
            tx.execute(
                "INSERT INTO role_permissions (role_id, permission_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![role.id, permission.id],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn ensure_roles(&self, names: &[String], now_ms: i64) -> Result<(), StoreError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction()?;
        for name in names {
            let fresh = Role::named(name, now_ms);
            tx.execute(
                "INSERT INTO roles (id, name, description, created_at) VALUES (?1, ?2, NULL, ?3) ON CONFLICT DO NOTHING",
                params![fresh.id, fresh.name, now_ms],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn role(&self, id_or_name: &str) -> Result<Option<Role>, StoreError> {
        let conn = lock(&self.writer);
        let found = one(
            &conn,
            &format!("SELECT {ROLE_COLUMNS} WHERE id = ?1 OR name = ?1"),
            id_or_name,
            role_row,
        )?;
        found.map(|role| with_permissions(&conn, role)).transpose()
    }

    fn list_roles(&self, page: Page<'_>) -> Result<Vec<Role>, StoreError> {
        let conn = lock(&self.writer);
        let sql =
            format!("SELECT {ROLE_COLUMNS} WHERE id > ?1 AND (?2 IS NULL OR instr(name, ?2) > 0) ORDER BY id LIMIT ?3");
        let roles = collect(
            &conn,
            &sql,
            params![page.cursor.unwrap_or(""), page.search, page.limit as i64],
            role_row,
        )?;
        roles.into_iter().map(|role| with_permissions(&conn, role)).collect()
    }

    fn update_role(&self, before: &Role, after: &Role) -> Result<(), StoreError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction()?;
        let result = tx.execute(
            "UPDATE roles SET name = ?2, description = ?3 WHERE id = ?1",
            params![before.id, after.name, after.description],
        );
        inserted(result, format!("role {}", after.name))?;
        if before.name != after.name {
            rewrite_keys(&tx, &holding("roles"), &before.name, |record| {
                renamed(&mut record.roles, &before.name, Some(&after.name))
            })?;
        }
        tx.commit()?;
        Ok(())
    }

    fn delete_role(&self, role: &Role) -> Result<(), StoreError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction()?;
        changed(tx.execute("DELETE FROM roles WHERE id = ?1", [&role.id])?)?;
        tx.execute("DELETE FROM role_permissions WHERE role_id = ?1", [&role.id])?;
        rewrite_keys(&tx, &holding("roles"), &role.name, |record| {
            renamed(&mut record.roles, &role.name, None)
        })?;
        tx.commit()?;
        Ok(())
    }

    fn set_role_permissions(&self, role_id: &str, permission_ids: &[String]) -> Result<(), StoreError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM role_permissions WHERE role_id = ?1", [role_id])?;
        for permission_id in permission_ids {
            tx.execute(
                "INSERT INTO role_permissions (role_id, permission_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![role_id, permission_id],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn role_grants(&self) -> Result<HashMap<String, Vec<String>>, StoreError> {
        let conn = lock(&self.writer);
        let pairs = collect(
            &conn,
            "SELECT r.name, p.slug FROM roles r JOIN role_permissions rp ON rp.role_id = r.id
             JOIN permissions p ON p.id = rp.permission_id ORDER BY r.name, p.slug",
            [],
            |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)),
        )?;
        let mut grants: HashMap<String, Vec<String>> = HashMap::new();
        for (role, slug) in pairs {
            grants.entry(role).or_default().push(slug);
        }
        Ok(grants)
    }

    fn namespace(&self, id_or_name: &str) -> Result<Option<Namespace>, StoreError> {
        let conn = lock(&self.writer);
        one(
            &conn,
            "SELECT id, name FROM ratelimit_namespaces WHERE id = ?1 OR name = ?1",
            id_or_name,
            |row| {
                Ok(Namespace {
                    id: row.get(0)?,
                    name: row.get(1)?,
                })
            },
        )
    }

    fn ensure_namespace(&self, name: &str, now_ms: i64) -> Result<Namespace, StoreError> {
        let conn = lock(&self.writer);
        conn.execute(
            "INSERT INTO ratelimit_namespaces (id, name, created_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            params![new_id("rlns"), name, now_ms],
        )?;
        let id: String = conn.query_row("SELECT id FROM ratelimit_namespaces WHERE name = ?1", [name], |row| {
            row.get(0)
        })?;
        Ok(Namespace {
            id,
            name: name.to_string(),
        })
    }

    fn set_override(&self, namespace: &Namespace, item: &Override, now_ms: i64) -> Result<Override, StoreError> {
        let conn = lock(&self.writer);
        conn.execute(
            "INSERT INTO ratelimit_overrides (id, namespace_id, identifier, limit_value, duration, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (namespace_id, identifier) DO UPDATE SET limit_value = excluded.limit_value, duration = excluded.duration",
            params![item.id, namespace.id, item.identifier, item.limit as i64, item.duration_ms as i64, now_ms],
        )?;
        let sql = format!("SELECT {OVERRIDE_COLUMNS} WHERE o.namespace_id = ?1 AND o.identifier = ?2");
        Ok(conn.query_row(&sql, params![namespace.id, item.identifier], override_row)?)
    }

    fn override_of(&self, namespace: &Namespace, identifier: &str) -> Result<Option<Override>, StoreError> {
        let conn = lock(&self.writer);
        let sql = format!("SELECT {OVERRIDE_COLUMNS} WHERE o.namespace_id = ?1 AND o.identifier = ?2");
        Ok(conn
            .query_row(&sql, params![namespace.id, identifier], override_row)
            .optional()?)
    }

    fn list_overrides(
        &self,
        namespace: &Namespace,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Override>, StoreError> {
        let conn = lock(&self.writer);
        let sql = format!("SELECT {OVERRIDE_COLUMNS} WHERE o.namespace_id = ?1 AND o.id > ?2 ORDER BY o.id LIMIT ?3");
        collect(
            &conn,
            &sql,
            params![namespace.id, cursor.unwrap_or(""), limit as i64],
            override_row,
        )
    }

    fn delete_override(&self, namespace: &Namespace, identifier: &str) -> Result<(), StoreError> {
        let conn = lock(&self.writer);
        changed(conn.execute(
            "DELETE FROM ratelimit_overrides WHERE namespace_id = ?1 AND identifier = ?2",
            params![namespace.id, identifier],
        )?)
    }

    fn all_overrides(&self) -> Result<Vec<Override>, StoreError> {
        let conn = lock(&self.writer);
        collect(&conn, &format!("SELECT {OVERRIDE_COLUMNS}"), [], override_row)
    }
}
