//! The projects deployments belong to: those of the file (with their
//! environments' policies) and those created through the API (stored as
//! `project` records, without policies). The file's win on a clash of id
//! or slug.

use super::model::ProjectRecord;
use super::{Platform, PlatformError, State, PROJECT};
use crate::clock::now_ms;
use crate::keys::model::new_id;
use crate::routing::HostPattern;
use crate::runtime::{is_slug, PlatformSettings, Project, DEFAULT_APP};

/// What `projects.createProject` asks for.
#[derive(Debug, Clone)]
pub struct NewProject {
    pub name: Option<String>,
    pub slug: String,
    pub production_branch: Option<String>,
    pub domains: Vec<String>,
    pub apps: Vec<String>,
}

/// Every project: the file's first, then the stored ones by creation.
pub fn all(state: &State, settings: &PlatformSettings) -> Vec<Project> {
    let mut projects = settings.projects.clone();
    let mut stored: Vec<&ProjectRecord> = state
        .projects
        .values()
        .filter(|p| settings.project(&p.id).is_none() && settings.project(&p.slug).is_none())
        .collect();
    stored.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    projects.extend(stored.into_iter().map(to_project));
    projects
}

/// The project with this id or slug.
pub fn find(state: &State, settings: &PlatformSettings, id_or_slug: &str) -> Option<Project> {
    if let Some(project) = settings.project(id_or_slug) {
        return Some(project.clone());
    }
    state
        .projects
        .values()
        .find(|p| p.id == id_or_slug || p.slug == id_or_slug)
        .map(to_project)
}

fn to_project(record: &ProjectRecord) -> Project {
    Project {
        id: record.id.clone(),
        name: record.name.clone(),
        slug: record.slug.clone(),
        production_branch: record.production_branch.clone(),
        domains: record.domains.clone(),
        environments: Default::default(),
        apps: if record.apps.is_empty() {
            vec![DEFAULT_APP.to_string()]
        } else {
            record.apps.clone()
        },
        created_at: Some(record.created_at),
    }
}

impl Platform {
    /// Creates a project; its slug must be new.
    pub fn create_project(&self, new: NewProject) -> Result<String, PlatformError> {
        if !is_slug(&new.slug, 40) {
            return Err(PlatformError::Invalid(format!(
                "slug {:?} must be 1-40 lowercase letters, digits and '-'",
                new.slug
            )));
        }
        for domain in &new.domains {
            if !matches!(HostPattern::parse(domain), Ok(HostPattern::Exact(_))) {
                return Err(PlatformError::Invalid(format!("domains: {domain:?} is not a DNS name")));
            }
        }
        for app in &new.apps {
            if !is_slug(app, 40) {
                return Err(PlatformError::Invalid(format!(
                    "apps: {app:?} must be 1-40 lowercase letters, digits and '-'"
                )));
            }
        }
        let settings = self.hub.current().platform.clone();
        let mut state = self.lock();
        if find(&state, &settings, &new.slug).is_some() {
            return Err(PlatformError::Conflict(format!(
                "a project with slug {:?} already exists",
                new.slug
            )));
        }
        let record = ProjectRecord {
            id: new_id("proj"),
            name: new.name.unwrap_or_else(|| new.slug.clone()),
            slug: new.slug,
            production_branch: new.production_branch.unwrap_or_else(|| "main".into()),
            domains: new.domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
            apps: new.apps,
            created_at: now_ms(),
        };
        self.save_project(&record)?;
        let id = record.id.clone();
        state.projects.insert(id.clone(), record);
        Ok(id)
    }

    /// The project with this id or slug.
    pub fn project(&self, id_or_slug: &str) -> Result<Project, PlatformError> {
        let settings = self.hub.current().platform.clone();
        find(&self.lock(), &settings, id_or_slug).ok_or_else(|| PlatformError::ProjectNotFound(id_or_slug.to_string()))
    }

    /// Projects whose slug or name contains `search`, after `cursor` (an id).
    pub fn list_projects(
        &self,
        search: Option<&str>,
        limit: usize,
        cursor: Option<&str>,
    ) -> (Vec<Project>, Option<String>) {
        let settings = self.hub.current().platform.clone();
        let matching: Vec<Project> = all(&self.lock(), &settings)
            .into_iter()
            .filter(|p| search.is_none_or(|s| p.slug.contains(s) || p.name.contains(s)))
            .collect();
        super::page(matching, limit, cursor, |p| p.id.as_str())
    }

    fn save_project(&self, record: &ProjectRecord) -> Result<(), PlatformError> {
        let keys = self.hub.current().keys.service.clone();
        let text = serde_json::to_string(record).map_err(|e| crate::keys::store::StoreError::Task(e.to_string()))?;
        keys.records().put_record(PROJECT, &record.id, &text, now_ms())?;
        keys.records_written();
        Ok(())
    }
}
