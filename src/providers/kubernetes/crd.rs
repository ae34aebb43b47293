//! The `KeygatePolicy` custom resource: a namespaced list of policies
//! (the file's `policies:` format) that Ingresses select with
//! `keygate.dev/policies`. Declared by hand rather than derived: the policy
//! list is kept as raw JSON here and checked by the policy compiler at
//! translation, so one invalid object is reported on its own instead of
//! failing the whole watch. Its CustomResourceDefinition
//! carries the policy types' schema, so the API server refuses most
//! mistakes before keygate sees them.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::{NamespaceResourceScope, Resource};
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "keygate.dev";
pub const VERSION: &str = "v1alpha1";
pub const KIND: &str = "KeygatePolicy";
pub const PLURAL: &str = "keygatepolicies";

/// `keygate.dev/v1alpha1` `KeygatePolicy`: `spec: {policies: [...]}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeygatePolicy {
    #[serde(rename = "apiVersion", default = "api_version")]
    pub api_version: String,
    #[serde(default = "kind")]
    pub kind: String,
    pub metadata: ObjectMeta,
    /// Unchecked until translation (see the module comment).
    #[serde(default)]
    pub spec: serde_json::Value,
}

/// The CustomResourceDefinition that installs `KeygatePolicy` in a
/// cluster (`keygate config crd`, `deploy/kubernetes/base/crd.yaml`), its
/// `openAPIV3Schema` generated from the policy types.
pub fn custom_resource_definition() -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{PLURAL}.{GROUP}")},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": format!("{KIND}List"),
                "plural": PLURAL,
                "singular": KIND.to_lowercase(),
                "shortNames": ["kgp"],
            },
            "versions": [{
                "name": VERSION,
                "served": true,
                "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": "Policies that Ingresses select with the annotation `keygate.dev/policies: <name>`.",
                    "required": ["spec"],
                    "properties": {"spec": {
                        "type": "object",
                        "properties": {
                            "policies": crate::config::schema::kubernetes_policies(),
                        },
                    }},
                }},
                "additionalPrinterColumns": [
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
            }],
        },
    })
}

fn api_version() -> String {
    format!("{GROUP}/{VERSION}")
}

fn kind() -> String {
    KIND.to_string()
}

impl KeygatePolicy {
    /// A policy object named `name` in `namespace` with `spec`.
    pub fn new(namespace: &str, name: &str, spec: serde_json::Value) -> Self {
        Self {
            api_version: api_version(),
            kind: kind(),
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(namespace.to_string()),
                ..ObjectMeta::default()
            },
            spec,
        }
    }
}

impl Resource for KeygatePolicy {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        KIND.into()
    }

    fn group(_: &()) -> Cow<'_, str> {
        GROUP.into()
    }

    fn version(_: &()) -> Cow<'_, str> {
        VERSION.into()
    }

    fn plural(_: &()) -> Cow<'_, str> {
        PLURAL.into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}
