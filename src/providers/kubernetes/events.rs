//! Problems with cluster objects, told where operators look: a Kubernetes
//! Event on the object (`kubectl describe ingress` shows it) and a log
//! line. Each problem is reported once when it appears, not on every
//! translation; one that goes away and comes back is reported again.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::chrono::Utc;
use kube::api::{Api, PostParams};
use kube::Client;

use super::translate::Problem;

/// `reportingComponent` of keygate's Events.
const COMPONENT: &str = "keygate-ingress-controller";

/// Reports problems as Events, once each.
pub struct Recorder {
    client: Client,
    /// This replica (the pod name), for `reportingInstance`.
    instance: String,
    reported: HashSet<Problem>,
}

impl Recorder {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            instance: std::env::var("POD_NAME")
                .or_else(|_| std::env::var("HOSTNAME"))
                .unwrap_or_else(|_| "keygate".to_string()),
            reported: HashSet::new(),
        }
    }

    /// Reports the problems of one translation that were not reported
    /// before; forgets the ones that are gone.
    pub fn report(&mut self, problems: &[Problem]) {
        let current: HashSet<Problem> = problems.iter().cloned().collect();
        for problem in current.difference(&self.reported) {
            tracing::error!(object = %problem.object, reason = problem.reason, "{}", problem.message);
            if problem.object.namespace.is_empty() {
                // Cluster-scoped objects (IngressClass) get the log line only.
                continue;
            }
            let event = self.event(problem);
            let api: Api<Event> = Api::namespaced(self.client.clone(), &problem.object.namespace);
            let object = problem.object.to_string();
            tokio::spawn(async move {
                if let Err(error) = api.create(&PostParams::default(), &event).await {
                    tracing::warn!(object, "cannot record a Kubernetes Event: {error}");
                }
            });
        }
        self.reported = current;
    }

    fn event(&self, problem: &Problem) -> Event {
        let now = Utc::now();
        let object = &problem.object;
        Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}.", object.name)),
                namespace: Some(object.namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: ObjectReference {
                api_version: Some(object.api_version.to_string()),
                kind: Some(object.kind.to_string()),
                name: Some(object.name.clone()),
                namespace: Some(object.namespace.clone()),
                uid: object.uid.clone(),
                ..ObjectReference::default()
            },
            reason: Some(problem.reason.to_string()),
            message: Some(problem.message.clone()),
            type_: Some("Warning".to_string()),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: Some(MicroTime(now)),
            action: Some("Sync".to_string()),
            source: Some(EventSource {
                component: Some(COMPONENT.to_string()),
                host: None,
            }),
            reporting_component: Some(COMPONENT.to_string()),
            reporting_instance: Some(self.instance.clone()),
            ..Event::default()
        }
    }
}
