//! Problems with cluster objects, told where operators look: a Kubernetes
//! Event on the object (`kubectl describe ingress` shows it) and a log
//! line. Each problem is reported once when it appears, not on every
//! translation; one that goes away and comes back is reported again.
//!
//! Events go through kube's [`Recorder`] (`events.k8s.io/v1`): a problem
//! that comes back within a few minutes, or a second one on the same object
//! with the same reason, continues the first Event's series (its count
//! grows, its note stays) instead of creating another, as client-go's
//! recorder does; the log line always has the message.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::Client;
use tokio::sync::mpsc;

use super::translate::Problem;

/// `reportingController` of keygate's Events.
const CONTROLLER: &str = "keygate-ingress-controller";
/// Events waiting for the API server; past this, new ones are only logged.
const QUEUE: usize = 256;

/// Reports problems as Events, once each, in the order they appear.
pub struct ProblemReporter {
    events: mpsc::Sender<(Event, ObjectReference)>,
    reported: HashSet<Problem>,
}

impl ProblemReporter {
    /// Starts the task that publishes the Events (it ends with the reporter).
    pub fn new(client: Client) -> Self {
        let reporter = Reporter {
            controller: CONTROLLER.to_string(),
            // This replica (the pod name).
            instance: Some(
                std::env::var("POD_NAME")
                    .or_else(|_| std::env::var("HOSTNAME"))
                    .unwrap_or_else(|_| "keygate".to_string()),
            ),
        };
        let recorder = Recorder::new(client, reporter);
        let (events, mut queue) = mpsc::channel::<(Event, ObjectReference)>(QUEUE);
        // One at a time: the recorder's series bookkeeping sees each Event
        // before the next one about the same object.
        tokio::spawn(async move {
            while let Some((event, object)) = queue.recv().await {
                if let Err(error) = recorder.publish(&event, &object).await {
                    let name = object.name.unwrap_or_default();
                    tracing::warn!(object = name, "cannot record a Kubernetes Event: {error}");
                }
            }
        });
        Self {
            events,
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
            if self
                .events
                .try_send((event(problem), object_reference(problem)))
                .is_err()
            {
                tracing::debug!(object = %problem.object, "Kubernetes Event dropped: too many waiting");
            }
        }
        self.reported = current;
    }
}

fn event(problem: &Problem) -> Event {
    Event {
        type_: EventType::Warning,
        reason: problem.reason.to_string(),
        note: Some(problem.message.clone()),
        action: "Sync".to_string(),
        secondary: None,
    }
}

fn object_reference(problem: &Problem) -> ObjectReference {
    let object = &problem.object;
    ObjectReference {
        api_version: Some(object.api_version.to_string()),
        kind: Some(object.kind.to_string()),
        name: Some(object.name.clone()),
        namespace: Some(object.namespace.clone()),
        uid: object.uid.clone(),
        ..ObjectReference::default()
    }
}
