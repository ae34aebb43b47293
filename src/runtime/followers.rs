//! What the background tasks that follow the configuration read from a
//! snapshot: each task (health checks, OpenAPI fetches, ACME) declares the
//! little it needs as a trait in its own module, and the snapshot provides it.

use crate::openapi::fetch::{FetchSources, Fetched};
use crate::state::StateSettings;
use crate::tls::acme::{AcmeSettings, AcmeSource};
use crate::upstream::supervisor::{Pool, Pools};

use super::Snapshot;

impl Pools for Snapshot {
    fn pools(&self) -> Vec<Pool<'_>> {
        self.deployments
            .iter()
            .map(|d| Pool {
                deployment: &d.id,
                instances: &d.instances,
                health_check: d.health_check.as_ref(),
                dns_refresh: d.dns_refresh,
            })
            .collect()
    }
}

impl FetchSources for Snapshot {
    fn fetch_sources(&self) -> Vec<Fetched<'_>> {
        self.deployments
            .iter()
            .filter_map(|d| {
                let slot = d.openapi.as_deref().filter(|slot| slot.fetch_path().is_some())?;
                Some(Fetched {
                    deployment: &d.id,
                    slot,
                    instances: &d.instances,
                })
            })
            .collect()
    }
}

impl AcmeSource for Snapshot {
    fn acme(&self) -> Option<&AcmeSettings> {
        self.tls.acme.as_ref()
    }

    fn state(&self) -> &StateSettings {
        &self.state
    }

    fn route_hosts(&self) -> Vec<String> {
        self.routes.iter().map(|(host, _)| host).collect()
    }
}
