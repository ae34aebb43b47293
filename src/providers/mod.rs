//! Routing providers: where deployments and routes come from. The
//! configuration file is one provider ([`file`]), Kubernetes and Docker
//! others; each publishes its whole share of the routing table to the
//! [`Hub`](crate::runtime::Hub), which merges the shares into the snapshot
//! the proxy reads.
//!
//! Adding a provider = a [`ProviderId`](crate::runtime::ProviderId)
//! variant, its section in
//! `config::providers` and `runtime::providers`, and a module here running
//! a background task that calls `Hub::publish` with a complete `Routing`
//! whenever its source changes. Certificates a provider finds go to the
//! certificate store under its own `tls::store::Source`; policies are
//! compiled into its deployments (named `policy_sets` from the file are
//! on the snapshot for every provider).

pub mod docker;
pub mod file;
pub mod kubernetes;
