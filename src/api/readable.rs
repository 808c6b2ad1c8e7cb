//! Objects as read from the API server, which may hold what this release cannot read: a status
//! written by a newer syncseq (a phase it added), or, after the controller alone was rolled
//! back, a spec value only the newer CRD allows. Decoded as they are, one such object would fail
//! the whole list it arrives in, and with it the watch and every reconcile of its kind. Wrapped
//! in [`Readable`], each object of a list decodes on its own: one that cannot be read is set
//! aside with the reason and where in the object it lies, and the others go on.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use kube::Resource;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};

use super::{Sync, SyncSequence, WebhookReceiver};

/// An object of kind `K`, or what is known of it when it cannot be read as one.
#[derive(Clone, Debug)]
pub enum Readable<K> {
    Read(K),
    /// Boxed: rare, and larger than most objects' wrappers.
    Unreadable(Box<Unreadable>),
}

/// An object that did not decode: its metadata, why, and the conditions it carries (read on
/// their own, so that the controller saying so once does not say it again on every event).
#[derive(Clone, Debug)]
pub struct Unreadable {
    pub metadata: ObjectMeta,
    /// What did not decode, with the path to it as far as it is known: `spec.concurrencyPolicy:
    /// unknown variant ...` (within the flattened parts of status, only `status: ...`).
    pub error: String,
    pub conditions: Vec<Condition>,
}

impl<'de, K: DeserializeOwned> Deserialize<'de> for Readable<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        match serde_path_to_error::deserialize::<_, K>(&value) {
            Ok(object) => Ok(Readable::Read(object)),
            Err(e) => {
                // Without its metadata an object cannot even be named: that is the API
                // server's answer being wrong, not an object of a newer release.
                let metadata = value
                    .get("metadata")
                    .map(ObjectMeta::deserialize)
                    .transpose()
                    .map_err(D::Error::custom)?
                    .ok_or_else(|| D::Error::missing_field("metadata"))?;
                let conditions = value
                    .pointer("/status/conditions")
                    .and_then(|c| Vec::<Condition>::deserialize(c).ok())
                    .unwrap_or_default();
                let path = e.path().to_string();
                // Shown in Events and logs; the value quoted in it is the object's.
                let error = format!("{path}: {}", e.into_inner())
                    .chars()
                    .filter(|c| !c.is_control())
                    .collect();
                Ok(Readable::Unreadable(Box::new(Unreadable {
                    metadata,
                    error,
                    conditions,
                })))
            }
        }
    }
}

impl<K: Resource> Resource for Readable<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn kind(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::version(dt)
    }
    fn plural(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        match self {
            Readable::Read(object) => object.meta(),
            Readable::Unreadable(u) => &u.metadata,
        }
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Readable::Read(object) => object.meta_mut(),
            Readable::Unreadable(u) => &mut u.metadata,
        }
    }
}

/// An object of the kind that has nothing but metadata: what a cache is told to forget when the
/// object it holds became unreadable (a cache forgets by name, and only a `K` can say one).
pub trait Shell: Resource {
    fn shell(metadata: ObjectMeta) -> Self;
}

impl Shell for SyncSequence {
    fn shell(metadata: ObjectMeta) -> Self {
        SyncSequence {
            metadata,
            spec: super::SyncSequenceSpec {
                scheduling: Default::default(),
                concurrency_policy: Default::default(),
                history_limit: 0,
                steps: Vec::new(),
                max_parallel: None,
                fail_fast: false,
                alerts: Vec::new(),
            },
            status: None,
        }
    }
}

impl Shell for Sync {
    fn shell(metadata: ObjectMeta) -> Self {
        Sync {
            metadata,
            spec: super::SyncSpec {
                job_template: Default::default(),
                scheduling: Default::default(),
            },
            status: None,
        }
    }
}

impl Shell for WebhookReceiver {
    fn shell(metadata: ObjectMeta) -> Self {
        WebhookReceiver {
            metadata,
            spec: super::WebhookReceiverSpec {
                type_: super::ReceiverType::Generic,
                secret_ref: super::SecretKeyRef {
                    name: String::new(),
                    key: String::new(),
                },
                dbt_cloud: None,
                fivetran: None,
            },
            status: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list(items: serde_json::Value) -> Vec<Readable<SyncSequence>> {
        serde_json::from_value(items).expect("a list of objects always decodes")
    }

    fn sequence(name: &str, phase: &str) -> serde_json::Value {
        json!({
            "apiVersion": "syncseq.dev/v1alpha1",
            "kind": "SyncSequence",
            "metadata": {"name": name, "namespace": "revops", "uid": format!("uid-{name}")},
            "spec": {"steps": [{"name": "accounts", "syncRef": {"name": "accounts"}}]},
            "status": {
                "conditions": [{
                    "type": "Ready", "status": "True", "reason": "Valid", "message": "",
                    "lastTransitionTime": "2026-12-01T00:00:00Z"
                }],
                "currentRun": {
                    "id": 1, "trigger": "Manual", "phase": "Running", "progress": "1/1",
                    "startTime": "2026-12-01T00:00:00Z",
                    "steps": [{"name": "accounts", "sync": "accounts", "phase": phase}]
                }
            }
        })
    }

    #[test]
    fn one_object_a_newer_release_wrote_does_not_fail_the_list() {
        let items = list(json!([
            sequence("crm-hourly", "Running"),
            sequence("ads-daily", "Paused"),
            sequence("support", "Succeeded"),
        ]));
        let names: Vec<_> = items
            .iter()
            .map(|r| match r {
                Readable::Read(s) => format!("read {}", s.metadata.name.as_deref().unwrap()),
                Readable::Unreadable(u) => {
                    format!("unreadable {}", u.metadata.name.as_deref().unwrap())
                }
            })
            .collect();
        assert_eq!(
            names,
            ["read crm-hourly", "unreadable ads-daily", "read support"]
        );
        let Readable::Unreadable(u) = &items[1] else {
            unreachable!()
        };
        // serde_path_to_error cannot see into the flattened parts of status: the path stops
        // at `status`, and the value names the rest.
        assert!(
            u.error
                .starts_with("status: unknown variant `Paused`, expected one of `Pending`"),
            "{}",
            u.error
        );
        assert_eq!(u.metadata.uid.as_deref(), Some("uid-ads-daily"));
        assert_eq!(u.conditions[0].type_, "Ready");
    }

    #[test]
    fn an_unreadable_object_is_named_by_its_metadata_and_its_error_is_printable() {
        let mut bad = sequence("x", "Running");
        bad["spec"]["concurrencyPolicy"] = json!("Allow\u{1b}[31m");
        bad["status"]["conditions"] = json!("not a list");
        let items = list(json!([bad]));
        let Readable::Unreadable(u) = &items[0] else {
            panic!("{items:?}")
        };
        assert_eq!(u.metadata.name.as_deref(), Some("x"));
        assert!(
            u.error.starts_with("spec.concurrencyPolicy: "),
            "{}",
            u.error
        );
        assert!(!u.error.chars().any(char::is_control), "{:?}", u.error);
        assert!(
            u.conditions.is_empty(),
            "conditions that do not decode are none"
        );
    }

    #[test]
    fn an_object_without_metadata_is_an_error() {
        let err = serde_json::from_value::<Readable<SyncSequence>>(json!({"spec": {}}))
            .expect_err("nothing to name it by");
        assert!(err.to_string().contains("metadata"), "{err}");
    }

    #[test]
    fn a_shell_has_the_name_and_nothing_else() {
        let meta = ObjectMeta {
            name: Some("crm".into()),
            namespace: Some("revops".into()),
            ..Default::default()
        };
        let shell = SyncSequence::shell(meta.clone());
        assert_eq!(shell.metadata, meta);
        assert!(shell.spec.steps.is_empty() && shell.status.is_none());
        assert_eq!(Sync::shell(meta.clone()).metadata, meta);
        assert_eq!(WebhookReceiver::shell(meta.clone()).metadata, meta);
    }
}
