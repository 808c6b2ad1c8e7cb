//! Recording events.k8s.io Events on a sequence.
//!
//! kube-runtime's `Recorder` folds Events with the same reason and action into one series and
//! keeps the first note, so "step accounts started" would be shown again for workspaces and
//! contacts. Every syncseq Event carries different text (step, Job, rows, error), so each is
//! created as its own Event.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};

use crate::engine::Event;

/// Events carry at most 1 KiB of note.
const MAX_NOTE_BYTES: usize = 1024;

/// Who records Events.
#[derive(Debug, Clone)]
pub struct Reporter {
    pub controller: String,
    pub instance: String,
}

/// Creates one Event about `regarding`.
pub async fn publish(
    client: &Client,
    reporter: &Reporter,
    regarding: &ObjectReference,
    ev: &Event,
) -> Result<(), kube::Error> {
    let ns = regarding
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let now = Timestamp::now();
    let event = K8sEvent {
        metadata: ObjectMeta {
            // Unique per Event, readable in `kubectl get events`.
            name: Some(format!(
                "{}.{:x}",
                regarding.name.clone().unwrap_or_default(),
                now.as_nanosecond()
            )),
            namespace: Some(ns.clone()),
            ..ObjectMeta::default()
        },
        action: Some(ev.action.into()),
        reason: Some(ev.reason.into()),
        note: Some(cut(&ev.note)),
        type_: Some(if ev.warning { "Warning" } else { "Normal" }.into()),
        event_time: Some(MicroTime(now)),
        regarding: Some(regarding.clone()),
        reporting_controller: Some(reporter.controller.clone()),
        reporting_instance: Some(reporter.instance.clone()),
        ..K8sEvent::default()
    };
    Api::<K8sEvent>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &event)
        .await
        .map(|_| ())
}

fn cut(note: &str) -> String {
    if note.len() <= MAX_NOTE_BYTES {
        return note.to_string();
    }
    let mut end = MAX_NOTE_BYTES - 3;
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &note[..end])
}
