//! The Gateway API kinds keygate watches (`gateway.networking.k8s.io`:
//! GatewayClass, Gateway, HTTPRoute, ReferenceGrant), as the reflectors
//! keep them: metadata, and `spec` and `status` as raw JSON.
//!
//! Declared by hand rather than taken from the `gateway-api` crate: its
//! releases are built on older `kube`/`k8s-openapi` versions than keygate's
//! (two `k8s-openapi` versions cannot share one build). And the spec stays
//! raw on purpose, like `KeygatePolicy`'s: a watch decodes a whole list at
//! once, so one object a typed decoder refuses would stop the watch of every
//! object of its kind. Each spec is decoded on its own at translation
//! ([`super::spec`]), where a bad one is reported and skipped alone.

use std::borrow::Cow;
use std::fmt::Debug;
use std::marker::PhantomData;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use kube::core::Resource;
use serde::{Deserialize, Serialize};

/// The Gateway API's group.
pub const GROUP: &str = "gateway.networking.k8s.io";

/// What distinguishes one Gateway API kind from another.
pub trait Kind: Clone + Debug + Default + Send + Sync + 'static {
    const KIND: &'static str;
    const VERSION: &'static str;
    /// `gateway.networking.k8s.io/<VERSION>`.
    const API_VERSION: &'static str;
    const PLURAL: &'static str;
    /// `NamespaceResourceScope` or `ClusterResourceScope`.
    type Scope;
}

/// One Gateway API object of kind `K`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct GatewayObject<K: Kind> {
    #[serde(rename = "apiVersion", default = "api_version::<K>")]
    pub api_version: String,
    #[serde(default = "kind::<K>")]
    pub kind: String,
    pub metadata: ObjectMeta,
    /// Decoded at translation (see the module comment).
    #[serde(default)]
    pub spec: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
    #[serde(skip)]
    marker: PhantomData<K>,
}

fn api_version<K: Kind>() -> String {
    format!("{GROUP}/{}", K::VERSION)
}

fn kind<K: Kind>() -> String {
    K::KIND.to_string()
}

impl<K: Kind> GatewayObject<K> {
    /// An object named `name` in `namespace` (empty: cluster-scoped) with `spec`.
    pub fn new(namespace: &str, name: &str, spec: serde_json::Value) -> Self {
        Self {
            api_version: api_version::<K>(),
            kind: kind::<K>(),
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: (!namespace.is_empty()).then(|| namespace.to_string()),
                ..ObjectMeta::default()
            },
            spec,
            status: None,
            marker: PhantomData,
        }
    }
}

impl<K: Kind> Resource for GatewayObject<K> {
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(_: &()) -> Cow<'_, str> {
        K::KIND.into()
    }

    fn group(_: &()) -> Cow<'_, str> {
        GROUP.into()
    }

    fn version(_: &()) -> Cow<'_, str> {
        K::VERSION.into()
    }

    fn plural(_: &()) -> Cow<'_, str> {
        K::PLURAL.into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

macro_rules! kinds {
    ($($(#[$doc:meta])* $marker:ident / $alias:ident: $kind:literal, $version:literal, $plural:literal, $scope:ty;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default)]
        pub struct $marker;

        impl Kind for $marker {
            const KIND: &'static str = $kind;
            const VERSION: &'static str = $version;
            const API_VERSION: &'static str = concat!("gateway.networking.k8s.io/", $version);
            const PLURAL: &'static str = $plural;
            type Scope = $scope;
        }

        $(#[$doc])*
        pub type $alias = GatewayObject<$marker>;
    )*};
}

kinds! {
    /// A class of Gateways; ours when its `controllerName` is keygate's.
    GatewayClassKind / GatewayClass: "GatewayClass", "v1", "gatewayclasses", ClusterResourceScope;
    /// Listeners (hostname, protocol, TLS) that routes attach to.
    GatewayKind / Gateway: "Gateway", "v1", "gateways", NamespaceResourceScope;
    /// HTTP routing rules attached to Gateway listeners.
    HttpRouteKind / HttpRoute: "HTTPRoute", "v1", "httproutes", NamespaceResourceScope;
    /// Permission for objects of another namespace to refer to this one's.
    ReferenceGrantKind / ReferenceGrant: "ReferenceGrant", "v1beta1", "referencegrants", NamespaceResourceScope;
}
