//! Who may refer to what across namespaces: a route's backend or a
//! Gateway's certificate in another namespace needs a `ReferenceGrant` in
//! that namespace naming the referring kind and namespace; and which
//! namespaces a listener's `allowedRoutes` selector admits.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::spec::ReferenceGrantSpec;

/// The core API group, however a reference spells it.
pub fn core_group(group: Option<&str>) -> bool {
    matches!(group, None | Some("" | "core"))
}

/// One end of a reference: `(group, kind, namespace)`.
pub struct From<'a> {
    pub group: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
}

/// The decoded ReferenceGrants, by namespace.
#[derive(Default)]
pub struct Grants {
    by_namespace: BTreeMap<String, Vec<ReferenceGrantSpec>>,
}

impl Grants {
    pub fn add(&mut self, namespace: &str, spec: ReferenceGrantSpec) {
        self.by_namespace.entry(namespace.to_string()).or_default().push(spec);
    }

    /// Whether `from` may refer to the object `(group, kind) namespace/name`.
    /// A reference within one namespace needs no grant.
    pub fn permits(&self, from: &From<'_>, group: &str, kind: &str, namespace: &str, name: &str) -> bool {
        if from.namespace == namespace {
            return true;
        }
        let same_group = |a: &str, b: &str| a == b || (core_group(Some(a)) && core_group(Some(b)));
        self.by_namespace.get(namespace).into_iter().flatten().any(|grant| {
            grant
                .from
                .iter()
                .any(|f| same_group(&f.group, from.group) && f.kind == from.kind && f.namespace == from.namespace)
                && grant.to.iter().any(|t| {
                    same_group(&t.group, group) && t.kind == kind && t.name.as_deref().is_none_or(|n| n == name)
                })
        })
    }
}

/// Whether `labels` satisfy `selector` (matchLabels and matchExpressions,
/// all of them; an empty selector selects everything). An unknown operator
/// selects nothing.
pub fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(key, value)| labels.get(key) == Some(value));
    let by_expressions = selector.match_expressions.iter().flatten().all(|expression| {
        let values = expression.values.as_deref().unwrap_or_default();
        let value = labels.get(&expression.key);
        match expression.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    by_labels && by_expressions
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    #[test]
    fn grants_name_both_ends() {
        let mut grants = Grants::default();
        let spec = serde_json::json!({
            "from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "shop"}],
            "to": [{"group": "", "kind": "Service", "name": "db"}],
        });
        grants.add("data", serde_json::from_value(spec).unwrap());
        let route = |namespace| From {
            group: "gateway.networking.k8s.io",
            kind: "HTTPRoute",
            namespace,
        };
        assert!(grants.permits(&route("shop"), "", "Service", "data", "db"));
        assert!(grants.permits(&route("shop"), "core", "Service", "data", "db"));
        assert!(!grants.permits(&route("shop"), "", "Service", "data", "other"));
        assert!(!grants.permits(&route("blog"), "", "Service", "data", "db"));
        assert!(!grants.permits(&route("shop"), "", "Secret", "data", "db"));
        assert!(grants.permits(&route("data"), "", "Secret", "data", "anything"));
    }

    #[test]
    fn selectors() {
        let labels = BTreeMap::from([("team".to_string(), "shop".to_string())]);
        let selector = |labels: &[(&str, &str)], expressions: Vec<(&str, &str, &[&str])>| LabelSelector {
            match_labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            match_expressions: Some(
                expressions
                    .into_iter()
                    .map(|(key, operator, values)| LabelSelectorRequirement {
                        key: key.into(),
                        operator: operator.into(),
                        values: Some(values.iter().map(|v| v.to_string()).collect()),
                    })
                    .collect(),
            ),
        };
        assert!(selects(&selector(&[], vec![]), &labels));
        assert!(selects(&selector(&[("team", "shop")], vec![]), &labels));
        assert!(!selects(&selector(&[("team", "blog")], vec![]), &labels));
        assert!(selects(&selector(&[], vec![("team", "In", &["a", "shop"])]), &labels));
        assert!(!selects(&selector(&[], vec![("team", "NotIn", &["shop"])]), &labels));
        assert!(selects(&selector(&[], vec![("env", "DoesNotExist", &[])]), &labels));
        assert!(!selects(&selector(&[], vec![("team", "Bogus", &[])]), &labels));
    }
}
