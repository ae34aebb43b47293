//! Copying the embedded store into a database (`keygate state migrate`):
//! the way from one gateway to a fleet without re-issuing keys. Written
//! against the store traits only, so it copies whatever they hold, ids and
//! hashes unchanged; what the target already has is left alone, which
//! makes running it twice harmless.

use std::fmt;

use super::catalogue::{CatalogueStore, Page};
use super::postgres::PgStore;
use super::sqlite::SqliteStore;
use super::store::{KeyStore, StoreError};
use crate::clock::now_ms;
use crate::state::StateSettings;

/// Items read per query while copying.
const BATCH: usize = 500;

/// What one kind of record came to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub copied: usize,
    /// Already in the target (same id or name): left as it was.
    pub present: usize,
}

impl Tally {
    fn record(&mut self, outcome: Result<(), StoreError>) -> Result<(), StoreError> {
        match outcome {
            Ok(()) => self.copied += 1,
            Err(StoreError::Conflict(_)) => self.present += 1,
            Err(e) => return Err(e),
        }
        Ok(())
    }
}

/// Counts per kind, in the order they are copied.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    pub keyspaces: Tally,
    pub identities: Tally,
    pub permissions: Tally,
    pub roles: Tally,
    pub keys: Tally,
    pub overrides: Tally,
}

impl fmt::Display for MigrationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows = [
            ("keyspaces", self.keyspaces),
            ("identities", self.identities),
            ("permissions", self.permissions),
            ("roles", self.roles),
            ("keys", self.keys),
            ("rate-limit overrides", self.overrides),
        ];
        for (what, tally) in rows {
            writeln!(
                f,
                "{what:<22} {:>7} copied {:>7} already there",
                tally.copied, tally.present
            )?;
        }
        Ok(())
    }
}

/// Copies the embedded store of `state.dir` into the PostgreSQL database
/// at `url` (migrating its schema first). `config_keyspaces` are the
/// keyspaces the config file defines (the store holds only those created
/// through the API; keys of both are copied). Fails when there is no
/// embedded store to copy.
pub fn migrate_to_database(
    state: &StateSettings,
    url: &str,
    config_keyspaces: &[String],
) -> Result<MigrationReport, StoreError> {
    let dir = state.dir.join("keys");
    if !dir.join("keys.db").exists() {
        return Err(StoreError::Io {
            path: dir.join("keys.db").display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no embedded key store to copy"),
        });
    }
    let from = SqliteStore::open(&dir)?;
    let to = PgStore::open(url)?;
    copy(&from, &to, config_keyspaces)
}

/// Copies every record of `from` into `to`, in dependency order
/// (permissions before the roles that grant them, keyspaces before keys),
/// and the keys of `config_keyspaces` as well as of stored keyspaces.
pub fn copy<F, T>(from: &F, to: &T, config_keyspaces: &[String]) -> Result<MigrationReport, StoreError>
where
    F: KeyStore + CatalogueStore,
    T: KeyStore + CatalogueStore,
{
    let mut report = MigrationReport::default();
    let keyspaces = from.list_keyspaces()?;
    for keyspace in &keyspaces {
        report.keyspaces.record(to.create_keyspace(keyspace))?;
    }
    let now = now_ms();
    paged(
        |cursor| from.list_identities(page(cursor)),
        |i| i.id(),
        |identity| report.identities.record(to.create_identity(identity, now)),
    )?;
    paged(
        |cursor| from.list_permissions(page(cursor)),
        |p| p.id.clone(),
        |permission| report.permissions.record(to.create_permission(permission)),
    )?;
    paged(
        |cursor| from.list_roles(page(cursor)),
        |r| r.id.clone(),
        |role| report.roles.record(to.create_role(role)),
    )?;
    let stored = keyspaces.iter().map(|k| &k.id);
    let defined = config_keyspaces
        .iter()
        .filter(|id| !keyspaces.iter().any(|k| &k.id == *id));
    for keyspace_id in stored.chain(defined) {
        paged(
            |cursor| from.list_keys(keyspace_id, cursor, BATCH, None),
            |k| k.record.id.clone(),
            |key| report.keys.record(to.insert_key(key)),
        )?;
    }
    for item in from.all_overrides()? {
        let namespace = to.ensure_namespace(&item.namespace, now)?;
        match to.override_of(&namespace, &item.identifier)? {
            Some(_) => report.overrides.present += 1,
            None => {
                to.set_override(&namespace, &item, now)?;
                report.overrides.copied += 1;
            }
        }
    }
    Ok(report)
}

fn page(cursor: Option<&str>) -> Page<'_> {
    Page {
        cursor,
        limit: BATCH,
        search: None,
    }
}

/// Walks a listing ordered by the id `cursor_of` gives, `BATCH` at a time.
fn paged<I>(
    mut list: impl FnMut(Option<&str>) -> Result<Vec<I>, StoreError>,
    cursor_of: impl Fn(&I) -> String,
    mut each: impl FnMut(&I) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut cursor: Option<String> = None;
    loop {
        let items = list(cursor.as_deref())?;
        for item in &items {
            each(item)?;
        }
        match items.last() {
            Some(last) if items.len() == BATCH => cursor = Some(cursor_of(last)),
            _ => return Ok(()),
        }
    }
}
