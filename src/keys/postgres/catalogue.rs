//! Identities, permissions, roles and rate-limit overrides in PostgreSQL:
//! the embedded catalogue's queries, with the same conflicts and the same
//! key-record rewrites on renames and deletions.

use std::collections::HashMap;

use deadpool_postgres::{GenericClient, Transaction};
use tokio_postgres::Row;

use super::{classify, conflict_or, PgStore};
use crate::keys::catalogue::{CatalogueStore, Namespace, Page, Permission, Role};
use crate::keys::model::{new_id, normalized, Identity, KeyRecord};
use crate::keys::sqlite::{decode_record, encode};
use crate::keys::sqlite_catalogue::{fill_identity, identity_json, renamed};
use crate::keys::store::StoreError;
use crate::ratelimit::overrides::Override;

const IDENTITY_COLUMNS: &str = "external_id, meta, ratelimits FROM identities";
const PERMISSION_COLUMNS: &str = "id, slug, name, description, created_at FROM permissions";
const ROLE_COLUMNS: &str = "id, name, description, created_at FROM roles";
const OVERRIDE_COLUMNS: &str =
    "o.id, n.name, o.identifier, o.limit_value, o.duration FROM ratelimit_overrides o JOIN ratelimit_namespaces n ON n.id = o.namespace_id";

fn identity_row(row: &Row) -> Result<Identity, StoreError> {
    let mut identity = Identity::new(row.get(0));
    fill_identity(&mut identity, row.get(1), row.get(2))?;
    Ok(identity)
}

fn permission_row(row: &Row) -> Permission {
    Permission {
        id: row.get(0),
        slug: row.get(1),
        name: row.get(2),
        description: row.get(3),
        created_at: row.get(4),
    }
}

fn role_row(row: &Row) -> Role {
    Role {
        id: row.get(0),
        name: row.get(1),
        description: row.get(2),
        created_at: row.get(3),
        permissions: Vec::new(),
    }
}

fn override_row(row: &Row) -> Override {
    Override {
        id: row.get(0),
        namespace: row.get(1),
        identifier: row.get(2),
        limit: row.get::<_, i64>(3).max(0) as u64,
        duration_ms: row.get::<_, i64>(4).max(0) as u64,
    }
}

fn changed(count: u64) -> Result<(), StoreError> {
    if count == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

async fn with_permissions(client: &impl GenericClient, mut role: Role) -> Result<Role, StoreError> {
    let rows = client
        .query(
            "SELECT p.id, p.slug, p.name, p.description, p.created_at FROM role_permissions rp
             JOIN permissions p ON p.id = rp.permission_id WHERE rp.role_id = $1 ORDER BY p.slug",
            &[&role.id],
        )
        .await
        .map_err(classify)?;
    role.permissions = rows.iter().map(permission_row).collect();
    Ok(role)
}

/// Keys whose record's `list` (`permissions` or `roles`) holds `$1`.
fn holding(list: &str) -> String {
    format!("(record::jsonb -> '{list}') ? $1")
}

async fn rewrite_keys(
    tx: &Transaction<'_>,
    filter: &str,
    param: &str,
    change: impl Fn(&mut KeyRecord),
) -> Result<(), StoreError> {
    let sql = format!("SELECT id, record FROM keys WHERE deleted_at IS NULL AND {filter} FOR UPDATE");
    for row in tx.query(&sql, &[&param]).await.map_err(classify)? {
        let id: String = row.get(0);
        let mut record = decode_record(row.get(1))?;
        change(&mut record);
        let external_id = record.identity.as_ref().map(|i| i.external_id.clone());
        tx.execute(
            "UPDATE keys SET record = $2, external_id = $3 WHERE id = $1",
            &[&id, &encode(&record)?, &external_id],
        )
        .await
        .map_err(classify)?;
    }
    Ok(())
}

impl CatalogueStore for PgStore {
    fn create_identity(&self, identity: &Identity, now_ms: i64) -> Result<(), StoreError> {
        let (meta, limits) = identity_json(identity)?;
        self.run(async {
            let client = self.client().await?;
            client
                .execute(
                    "INSERT INTO identities (id, external_id, meta, ratelimits, created_at) VALUES ($1, $2, $3, $4, $5)",
                    &[&identity.id(), &identity.external_id, &meta, &limits, &now_ms],
                )
                .await
                .map_err(|e| conflict_or(e, format!("identity {}", identity.external_id)))?;
            Ok(())
        })
    }

    fn ensure_identity(&self, external_id: &str, now_ms: i64) -> Result<(), StoreError> {
        let id = Identity::new(external_id.to_string()).id();
        self.run(async {
            let client = self.client().await?;
            client
                .execute(
                    "INSERT INTO identities (id, external_id, meta, ratelimits, created_at) VALUES ($1, $2, '{}', '[]', $3)
                     ON CONFLICT DO NOTHING",
                    &[&id, &external_id, &now_ms],
                )
                .await
                .map_err(classify)?;
            Ok(())
        })
    }

    fn identity(&self, id_or_external_id: &str) -> Result<Option<Identity>, StoreError> {
        let sql = format!("SELECT {IDENTITY_COLUMNS} WHERE id = $1 OR external_id = $1");
        self.run(async {
            let client = self.client().await?;
            client
                .query_opt(&sql, &[&id_or_external_id])
                .await
                .map_err(classify)?
                .as_ref()
                .map(identity_row)
                .transpose()
        })
    }

    fn list_identities(&self, page: Page<'_>) -> Result<Vec<Identity>, StoreError> {
        let sql = format!(
            "SELECT {IDENTITY_COLUMNS} WHERE id > $1 AND ($2::text IS NULL OR strpos(external_id, $2) > 0) ORDER BY id LIMIT $3"
        );
        let (cursor, limit) = (page.cursor.unwrap_or(""), page.limit as i64);
        self.run(async {
            let client = self.client().await?;
            let rows = client
                .query(&sql, &[&cursor, &page.search, &limit])
                .await
                .map_err(classify)?;
            rows.iter().map(identity_row).collect()
        })
    }

    fn update_identity(&self, identity: &Identity) -> Result<(), StoreError> {
        let (meta, limits) = identity_json(identity)?;
        self.run(async {
            let client = self.client().await?;
            changed(
                client
                    .execute(
                        "UPDATE identities SET meta = $2, ratelimits = $3 WHERE external_id = $1",
                        &[&identity.external_id, &meta, &limits],
                    )
                    .await
                    .map_err(classify)?,
            )
        })
    }

    fn delete_identity(&self, external_id: &str) -> Result<(), StoreError> {
        self.run(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(classify)?;
            changed(
                tx.execute("DELETE FROM identities WHERE external_id = $1", &[&external_id])
                    .await
                    .map_err(classify)?,
            )?;
            rewrite_keys(&tx, "external_id = $1", external_id, |record| record.identity = None).await?;
            tx.commit().await.map_err(classify)
        })
    }

    fn create_permission(&self, permission: &Permission) -> Result<(), StoreError> {
        self.run(async {
            let client = self.client().await?;
            client
                .execute(
                    "INSERT INTO permissions (id, slug, name, description, created_at) VALUES ($1, $2, $3, $4, $5)",
                    &[
                        &permission.id,
                        &permission.slug,
                        &permission.name,
                        &permission.description,
                        &permission.created_at,
                    ],
                )
                .await
                .map_err(|e| conflict_or(e, format!("permission {}", permission.slug)))?;
            Ok(())
        })
    }

    fn ensure_permissions(&self, slugs: &[String], now_ms: i64) -> Result<Vec<Permission>, StoreError> {
        let sql = format!("SELECT {PERMISSION_COLUMNS} WHERE slug = $1");
        self.run(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(classify)?;
            let mut found = Vec::with_capacity(slugs.len());
            for slug in normalized(slugs.to_vec()) {
                let fresh = Permission::named_after(&slug, now_ms);
                tx.execute(
                    "INSERT INTO permissions (id, slug, name, description, created_at) VALUES ($1, $2, $3, NULL, $4)
                     ON CONFLICT DO NOTHING",
                    &[&fresh.id, &fresh.slug, &fresh.name, &now_ms],
                )
                .await
                .map_err(classify)?;
                found.extend(
                    tx.query_opt(&sql, &[&slug])
                        .await
                        .map_err(classify)?
                        .as_ref()
                        .map(permission_row),
                );
            }
            tx.commit().await.map_err(classify)?;
            Ok(found)
        })
    }

    fn permission(&self, id_or_slug: &str) -> Result<Option<Permission>, StoreError> {
        let sql = format!("SELECT {PERMISSION_COLUMNS} WHERE id = $1 OR slug = $1");
        self.run(async {
            let client = self.client().await?;
            Ok(client
                .query_opt(&sql, &[&id_or_slug])
                .await
                .map_err(classify)?
                .as_ref()
                .map(permission_row))
        })
    }

    fn list_permissions(&self, page: Page<'_>) -> Result<Vec<Permission>, StoreError> {
        let sql = format!(
            "SELECT {PERMISSION_COLUMNS} WHERE id > $1 AND ($2::text IS NULL OR strpos(slug, $2) > 0 OR strpos(name, $2) > 0)
             ORDER BY id LIMIT $3"
        );
        let (cursor, limit) = (page.cursor.unwrap_or(""), page.limit as i64);
        self.run(async {
            let client = self.client().await?;
            Ok(client
                .query(&sql, &[&cursor, &page.search, &limit])
                .await
                .map_err(classify)?
                .iter()
                .map(permission_row)
                .collect())
        })
    }

    fn update_permission(&self, before: &Permission, after: &Permission) -> Result<(), StoreError> {
        self.run(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(classify)?;
            tx.execute(
                "UPDATE permissions SET slug = $2, name = $3, description = $4 WHERE id = $1",
                &[&before.id, &after.slug, &after.name, &after.description],
            )
            .await
            .map_err(|e| conflict_or(e, format!("permission {}", after.slug)))?;
            if before.slug != after.slug {
                rewrite_keys(&tx, &holding("permissions"), &before.slug, |record| {
                    renamed(&mut record.permissions, &before.slug, Some(&after.slug))
                })
                .await?;
            }
            tx.commit().await.map_err(classify)
        })
    }

    fn delete_permission(&self, permission: &Permission) -> Result<(), StoreError> {
        self.run(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(classify)?;
            changed(
                tx.execute("DELETE FROM permissions WHERE id = $1", &[&permission.id])
                    .await
                    .map_err(classify)?,
            )?;
            tx.execute(
                "DELETE FROM role_permissions WHERE permission_id = $1",
                &[&permission.id],
            )
            .await
            .map_err(classify)?;
            rewrite_keys(&tx, &holding("permissions"), &permission.slug, |record| {
                renamed(&mut record.permissions, &permission.slug, None)
            })
            .await?;
            tx.commit().await.map_err(classify)
        })
    }

    fn create_role(&self, role: &Role) -> Result<(), StoreError> {
        self.run(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(classify)?;
            tx.execute(
                "INSERT INTO roles (id, name, description, created_at) VALUES ($1, $2, $3, $4)",
                &[&role.id, &role.name, &role.description, &role.created_at],
            )
            .await
            .map_err(|e| conflict_or(e, format!("role {}", role.name)))?;
            for permission in &role.permissions {
                tx.execute(
                    "INSERT INTO role_permissions (role_id, permission_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&role.id, &permission.id],
                )
                .await
                .map_err(classify)?;
            }
            tx.commit().await.map_err(classify)
        })
    }

    fn ensure_roles(&self, names: &[String], now_ms: i64) -> Result<(), StoreError> {
        self.run(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(classify)?;
            for name in names {
                let fresh = Role::named(name, now_ms);
                tx.execute(
                    "INSERT INTO roles (id, name, description, created_at) VALUES ($1, $2, NULL, $3) ON CONFLICT DO NOTHING",
                    &[&fresh.id, &fresh.name, &now_ms],
                )
                .await
                .map_err(classify)?;
            }
            tx.commit().await.map_err(classify)
        })
    }

    fn role(&self, id_or_name: &str) -> Result<Option<Role>, StoreError> {
        let sql = format!("SELECT {ROLE_COLUMNS} WHERE id = $1 OR name = $1");
        self.run(async {
            let client = self.client().await?;
            match client.query_opt(&sql, &[&id_or_name]).await.map_err(classify)? {
                Some(row) => Ok(Some(with_permissions(&client, role_row(&row)).await?)),
                None => Ok(None),
            }
        })
    }

    fn list_roles(&self, page: Page<'_>) -> Result<Vec<Role>, StoreError> {
        let sql = format!(
            "SELECT {ROLE_COLUMNS} WHERE id > $1 AND ($2::text IS NULL OR strpos(name, $2) > 0) ORDER BY id LIMIT $3"
        );
        let (cursor, limit) = (page.cursor.unwrap_or(""), page.limit as i64);
        self.run(async {
            let client = self.client().await?;
            let mut roles = Vec::new();
            for row in client
                .query(&sql, &[&cursor, &page.search, &limit])
                .await
                .map_err(classify)?
            {
                roles.push(with_permissions(&client, role_row(&row)).await?);
            }
            Ok(roles)
        })
    }

    fn update_role(&self, before: &Role, after: &Role) -> Result<(), StoreError> {
        self.run(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(classify)?;
            tx.execute(
                "UPDATE roles SET name = $2, description = $3 WHERE id = $1",
                &[&before.id, &after.name, &after.description],
            )
            .await
            .map_err(|e| conflict_or(e, format!("role {}", after.name)))?;
            if before.name != after.name {
                rewrite_keys(&tx, &holding("roles"), &before.name, |record| {
                    renamed(&mut record.roles, &before.name, Some(&after.name))
                })
                .await?;
            }
            tx.commit().await.map_err(classify)
        })
    }

    fn delete_role(&self, role: &Role) -> Result<(), StoreError> {
        self.run(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(classify)?;
            changed(
                tx.execute("DELETE FROM roles WHERE id = $1", &[&role.id])
                    .await
                    .map_err(classify)?,
            )?;
            tx.execute("DELETE FROM role_permissions WHERE role_id = $1", &[&role.id])
                .await
                .map_err(classify)?;
            rewrite_keys(&tx, &holding("roles"), &role.name, |record| {
                renamed(&mut record.roles, &role.name, None)
            })
            .await?;
            tx.commit().await.map_err(classify)
        })
    }

    fn set_role_permissions(&self, role_id: &str, permission_ids: &[String]) -> Result<(), StoreError> {
        self.run(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(classify)?;
            tx.execute("DELETE FROM role_permissions WHERE role_id = $1", &[&role_id])
                .await
                .map_err(classify)?;
            for permission_id in permission_ids {
                tx.execute(
                    "INSERT INTO role_permissions (role_id, permission_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&role_id, permission_id],
                )
                .await
                .map_err(classify)?;
            }
            tx.commit().await.map_err(classify)
        })
    }

    fn role_grants(&self) -> Result<HashMap<String, Vec<String>>, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT r.name, p.slug FROM roles r JOIN role_permissions rp ON rp.role_id = r.id
                     JOIN permissions p ON p.id = rp.permission_id ORDER BY r.name, p.slug",
                    &[],
                )
                .await
                .map_err(classify)?;
            let mut grants: HashMap<String, Vec<String>> = HashMap::new();
            for row in rows {
                grants.entry(row.get(0)).or_default().push(row.get(1));
            }
            Ok(grants)
        })
    }

    fn namespace(&self, id_or_name: &str) -> Result<Option<Namespace>, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let row = client
                .query_opt(
                    "SELECT id, name FROM ratelimit_namespaces WHERE id = $1 OR name = $1",
                    &[&id_or_name],
                )
                .await
                .map_err(classify)?;
            Ok(row.map(|row| Namespace {
                id: row.get(0),
                name: row.get(1),
            }))
        })
    }

    fn ensure_namespace(&self, name: &str, now_ms: i64) -> Result<Namespace, StoreError> {
        let fresh_id = new_id("rlns");
        self.run(async {
            let client = self.client().await?;
            client
                .execute(
                    "INSERT INTO ratelimit_namespaces (id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    &[&fresh_id, &name, &now_ms],
                )
                .await
                .map_err(classify)?;
            let row = client.query_one("SELECT id FROM ratelimit_namespaces WHERE name = $1", &[&name]).await.map_err(classify)?;
            Ok(Namespace { id: row.get(0), name: name.to_string() })
        })
    }

    fn set_override(&self, namespace: &Namespace, item: &Override, now_ms: i64) -> Result<Override, StoreError> {
        let sql = format!("SELECT {OVERRIDE_COLUMNS} WHERE o.namespace_id = $1 AND o.identifier = $2");
        let (limit, duration) = (item.limit as i64, item.duration_ms as i64);
        self.run(async {
            let client = self.client().await?;
            client
                .execute(
                    "INSERT INTO ratelimit_overrides (id, namespace_id, identifier, limit_value, duration, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (namespace_id, identifier) DO UPDATE SET limit_value = excluded.limit_value, duration = excluded.duration",
                    &[&item.id, &namespace.id, &item.identifier, &limit, &duration, &now_ms],
                )
                .await
                .map_err(classify)?;
            let row = client.query_one(&sql, &[&namespace.id, &item.identifier]).await.map_err(classify)?;
            Ok(override_row(&row))
        })
    }

    fn override_of(&self, namespace: &Namespace, identifier: &str) -> Result<Option<Override>, StoreError> {
        let sql = format!("SELECT {OVERRIDE_COLUMNS} WHERE o.namespace_id = $1 AND o.identifier = $2");
        self.run(async {
            let client = self.client().await?;
            Ok(client
                .query_opt(&sql, &[&namespace.id, &identifier])
                .await
                .map_err(classify)?
                .as_ref()
                .map(override_row))
        })
    }

    fn list_overrides(
        &self,
        namespace: &Namespace,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Override>, StoreError> {
        let sql = format!("SELECT {OVERRIDE_COLUMNS} WHERE o.namespace_id = $1 AND o.id > $2 ORDER BY o.id LIMIT $3");
        let (cursor, limit) = (cursor.unwrap_or(""), limit as i64);
        self.run(async {
            let client = self.client().await?;
            Ok(client
                .query(&sql, &[&namespace.id, &cursor, &limit])
                .await
                .map_err(classify)?
                .iter()
                .map(override_row)
                .collect())
        })
    }

    fn delete_override(&self, namespace: &Namespace, identifier: &str) -> Result<(), StoreError> {
        self.run(async {
            let client = self.client().await?;
            changed(
                client
                    .execute(
                        "DELETE FROM ratelimit_overrides WHERE namespace_id = $1 AND identifier = $2",
                        &[&namespace.id, &identifier],
                    )
                    .await
                    .map_err(classify)?,
            )
        })
    }

    fn all_overrides(&self) -> Result<Vec<Override>, StoreError> {
        let sql = format!("SELECT {OVERRIDE_COLUMNS}");
        self.run(async {
            let client = self.client().await?;
            Ok(client
                .query(&sql, &[])
                .await
                .map_err(classify)?
                .iter()
                .map(override_row)
                .collect())
        })
    }
}
