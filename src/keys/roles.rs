//! Roles as verification sees them: each role's permission slugs, and a
//! generation that changes with every change to the catalogue. A key with
//! roles compiles its grants and Principal against one generation and
//! recompiles them the first time it is verified under a newer one, so a
//! role's new permissions apply at once to every key — cached, stored or
//! from the config — without touching the keys.

use std::collections::HashMap;

/// The role catalogue of one moment.
#[derive(Debug, Default)]
pub struct RoleGrants {
    pub generation: u64,
    roles: HashMap<String, Vec<String>>,
}

impl RoleGrants {
    pub fn new(generation: u64, roles: HashMap<String, Vec<String>>) -> Self {
        Self { generation, roles }
    }

    /// A key's permissions: its own and those of its roles, sorted and unique.
    pub fn effective(&self, direct: &[String], roles: &[String]) -> Vec<String> {
        let mut all: Vec<String> = direct.to_vec();
        for role in roles {
            if let Some(granted) = self.roles.get(role) {
                all.extend(granted.iter().cloned());
            }
        }
        all.sort();
        all.dedup();
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_add_their_permissions() {
        let grants = RoleGrants::new(
            1,
            HashMap::from([("admin".to_string(), vec!["b".to_string(), "c".to_string()])]),
        );
        let own = vec!["a".to_string(), "b".to_string()];
        assert_eq!(
            grants.effective(&own, &["admin".into(), "unknown".into()]),
            ["a", "b", "c"]
        );
        assert_eq!(grants.effective(&own, &[]), ["a", "b"]);
    }
}
