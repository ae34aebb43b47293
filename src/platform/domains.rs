//! The domains a deployment gets, from its project's slug, its commit,
//! branch and environment (lowercase, DNS-safe, labels at most 63
//! characters): commit `{slug}-{sha7}`, branch `{slug}-git-{branch}`,
//! environment `{slug}-{environment}`, and for production's live
//! deployment `{slug}` and the project's custom domains — each under
//! `platform.base_domain` but the custom ones.

use super::model::DeploymentRecord;

/// The longest DNS label.
const LABEL: usize = 63;

/// `text` as a DNS label: lowercase, every run of other characters one
/// `-`, no `-` at either end, at most 63 characters.
pub fn slug(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed = out.trim_matches('-');
    let mut label: String = trimmed.chars().take(LABEL).collect();
    while label.ends_with('-') {
        label.pop();
    }
    label
}

fn under(label: &str, base_domain: &str) -> String {
    format!("{}.{base_domain}", slug(label))
}

/// `{slug}-{sha7}` (or `{slug}-{id}` without a commit).
pub fn commit(project_slug: &str, deployment: &DeploymentRecord, base_domain: &str) -> String {
    let tail = match deployment
        .git_commit
        .commit_sha
        .as_deref()
        .filter(|sha| !sha.is_empty())
    {
        Some(sha) => sha.chars().take(7).collect::<String>(),
        None => deployment.id.trim_start_matches("d_").to_ascii_lowercase(),
    };
    under(&format!("{project_slug}-{tail}"), base_domain)
}

/// `{slug}-git-{branch}`.
pub fn branch(project_slug: &str, branch: &str, base_domain: &str) -> String {
    under(&format!("{project_slug}-git-{branch}"), base_domain)
}

/// `{slug}-{environment}`.
pub fn environment(project_slug: &str, environment: &str, base_domain: &str) -> String {
    under(&format!("{project_slug}-{environment}"), base_domain)
}

/// `{slug}` and the project's own domains.
pub fn live(project_slug: &str, custom: &[String], base_domain: &str) -> Vec<String> {
    let mut domains = vec![under(project_slug, base_domain)];
    domains.extend(custom.iter().cloned());
    domains
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_names_become_dns_labels() {
        assert_eq!(slug("feat/Login"), "feat-login");
        assert_eq!(slug("--Fix__the  BUG--"), "fix-the-bug");
        assert_eq!(
            branch("api", "feat/Login", "keygate.app"),
            "api-git-feat-login.keygate.app"
        );
        let long = slug(&"a".repeat(100));
        assert_eq!(long.len(), 63);
        assert_eq!(
            slug(&format!("{}-b", "a".repeat(62))),
            "a".repeat(62),
            "no trailing dash after the cut"
        );
    }
}
