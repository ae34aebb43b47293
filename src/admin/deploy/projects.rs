//! `projects.*`: projects created through the API (Unkey's `{name, slug}`,
//! plus keygate's `productionBranch`, `domains` and `apps`), read together
//! with those of the configuration file.

use serde_json::json;

use super::refused;
use super::render::project as render;
use crate::admin::envelope::Reply;
use crate::admin::fields::{Fields, Patch, Text};
use crate::admin::rpc::required;
use crate::errors::GatewayError;
use crate::platform::{NewProject, Platform};

/// The `projects.*` operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Get,
    List,
}

impl Op {
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "projects.createProject" => Self::Create,
            "projects.getProject" => Self::Get,
            "projects.listProjects" => Self::List,
            _ => return None,
        })
    }
}

pub fn handle(op: Op, mut f: Fields, platform: &Platform) -> Result<Reply, GatewayError> {
    match op {
        Op::Create => {
            let name = f.text("name", Text::len(1, 255), false);
            let slug = f.text("slug", Text::len(1, 40), true);
            let production_branch = f.text("productionBranch", Text::len(1, 255), false);
            let domains = list(&mut f, "domains", 253);
            let apps = list(&mut f, "apps", 40);
            f.finish()?;
            let id = platform
                .create_project(NewProject {
                    name,
                    slug: required(slug, "slug")?,
                    production_branch,
                    domains,
                    apps,
                })
                .map_err(refused)?;
            // `id` for Unkey's SDKs, `projectId` as keygate documents it.
            Ok(Reply::data(json!({"id": id, "projectId": id})))
        }
        Op::Get => {
            let project = f
                .text("project", Text::len(1, 255), false)
                .or_else(|| f.text("projectId", Text::len(1, 255), false));
            f.finish()?;
            let project = platform.project(&required(project, "project")?).map_err(refused)?;
            Ok(Reply::data(render(&project)))
        }
        Op::List => {
            let limit = f.int("limit", 1, 100, false).unwrap_or(100) as usize;
            let cursor = f.text("cursor", Text::len(1, 255), false);
            let search = f.text("search", Text::len(1, 255), false);
            f.finish()?;
            let (page, next) = platform.list_projects(search.as_deref(), limit, cursor.as_deref());
            Ok(Reply::page(page.iter().map(render).collect(), next))
        }
    }
}

fn list(f: &mut Fields, name: &str, max_len: usize) -> Vec<String> {
    match f.text_list(name, 100, Text::len(1, max_len)) {
        Patch::Set(items) => items,
        Patch::Keep | Patch::Clear => Vec::new(),
    }
}
