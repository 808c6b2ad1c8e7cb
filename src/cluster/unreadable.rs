//! Objects this release cannot read ([`Readable`]): a newer syncseq's status, a value only a
//! newer CRD allows. They are kept out of the caches, so the engine never acts on one (nor on
//! the copy a cache held before it became unreadable), and said on the object: `Stalled` and
//! `Ready=False` with reason `ObjectUnreadable`, and a Warning Event, once per reason. Nothing
//! else of the object is touched, so a newer controller finds it as it left it.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use serde_json::json;
use tokio::sync::mpsc;

use super::events::{self, Reporter};
use crate::api::{Readable, Shell, Unreadable};
use crate::engine::reasons::OBJECT_UNREADABLE;

/// The field manager of the conditions written here: another than the status writer's, so that
/// this write removes none of the fields that one owns.
const FIELD_MANAGER: &str = "syncseq-unreadable";

/// Attempts at writing the conditions and the Event before leaving it to the object's next
/// change: an object that cannot be read has no reconcile to retry it.
const ATTEMPTS: u32 = 4;

/// What [`SetAside::filter`] answers for each watch event.
type Filtered<K> = std::future::Ready<Result<Option<watcher::Event<K>>, watcher::Error>>;

/// One unreadable object, to be said on the object.
struct Report {
    resource: ApiResource,
    object: Unreadable,
}

/// Where unreadable objects go: said on the object by the leader, or only logged (a standby's
/// webhook endpoint writes nothing).
#[derive(Clone)]
pub(crate) struct SetAside {
    reports: Option<mpsc::UnboundedSender<Report>>,
}

impl SetAside {
    /// Logs what it sets aside, and writes nothing.
    pub(crate) fn log_only() -> Self {
        SetAside { reports: None }
    }

    /// Says each unreadable object on the object, from a task of its own, once `writable`
    /// (the replica leads): what a standby's watches set aside waits until then.
    pub(crate) fn start(
        client: Client,
        reporter: Reporter,
        writable: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Report>();
        tokio::spawn(async move {
            writable.await;
            while let Some(report) = rx.recv().await {
                say(&client, &reporter, &report).await;
            }
        });
        SetAside { reports: Some(tx) }
    }

    /// A watch event of `Readable<K>` as the caches take it. An object that cannot be read is
    /// reported, and a cache that held it is told it is gone.
    pub(crate) fn event<K>(&self, event: watcher::Event<Readable<K>>) -> Option<watcher::Event<K>>
    where
        K: Shell<DynamicType = ()>,
    {
        use watcher::Event as E;
        match event {
            E::Init => Some(E::Init),
            E::InitDone => Some(E::InitDone),
            E::InitApply(Readable::Read(k)) => Some(E::InitApply(k)),
            E::Apply(Readable::Read(k)) => Some(E::Apply(k)),
            E::Delete(Readable::Read(k)) => Some(E::Delete(k)),
            E::Delete(Readable::Unreadable(u)) => Some(E::Delete(K::shell(u.metadata))),
            // A relist builds the cache afresh: leaving it out is forgetting it.
            E::InitApply(Readable::Unreadable(u)) => {
                self.report::<K>(*u);
                None
            }
            E::Apply(Readable::Unreadable(u)) => {
                let gone = K::shell(u.metadata.clone());
                self.report::<K>(*u);
                Some(E::Delete(gone))
            }
        }
    }

    /// [`SetAside::event`] for `TryStreamExt::try_filter_map` on a watch stream.
    pub(crate) fn filter<K: Shell<DynamicType = ()>>(
        &self,
    ) -> impl FnMut(watcher::Event<Readable<K>>) -> Filtered<K> + use<K> {
        let set_aside = self.clone();
        move |event| std::future::ready(Ok(set_aside.event(event)))
    }

    fn report<K: Resource<DynamicType = ()>>(&self, object: Unreadable) {
        tracing::warn!(
            kind = %K::kind(&()),
            namespace = %object.metadata.namespace.as_deref().unwrap_or_default(),
            name = %object.metadata.name.as_deref().unwrap_or_default(),
            error = %object.error,
            "cannot read this object; leaving it alone"
        );
        if let Some(tx) = &self.reports {
            let _ = tx.send(Report {
                resource: ApiResource::erase::<K>(&()),
                object,
            });
        }
    }
}

/// What the conditions say about an object that cannot be read.
fn message(error: &str) -> String {
    format!(
        "syncseq {} cannot read this object ({error}); it was probably written by a newer \
         syncseq or for a newer CRD. It is left as it is until it can be read: upgrade the \
         controller, or undo the change",
        env!("CARGO_PKG_VERSION")
    )
}

/// The conditions, unless the object already carries them with this message.
fn conditions(object: &Unreadable, now: Timestamp) -> Option<Vec<Condition>> {
    let message = message(&object.error);
    let said = object.conditions.iter().any(|c| {
        c.type_ == "Stalled"
            && c.status == "True"
            && c.reason == OBJECT_UNREADABLE
            && c.message == message
    });
    if said {
        return None;
    }
    let condition = |type_: &str, status: &str| Condition {
        type_: type_.into(),
        status: status.into(),
        reason: OBJECT_UNREADABLE.into(),
        message: message.clone(),
        last_transition_time: Time(now),
        observed_generation: object.metadata.generation,
    };
    Some(vec![
        condition("Ready", "False"),
        condition("Stalled", "True"),
    ])
}

async fn say(client: &Client, reporter: &Reporter, report: &Report) {
    let Some(conditions) = conditions(&report.object, Timestamp::now()) else {
        return;
    };
    let meta = &report.object.metadata;
    let (Some(name), Some(namespace)) = (meta.name.as_deref(), meta.namespace.as_deref()) else {
        return;
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &report.resource);
    let patch = json!({
        "apiVersion": report.resource.api_version,
        "kind": report.resource.kind,
        "status": {"conditions": conditions},
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let regarding = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(report.resource.api_version.clone()),
        kind: Some(report.resource.kind.clone()),
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..Default::default()
    };
    let event = crate::engine::Event {
        warning: true,
        reason: OBJECT_UNREADABLE,
        action: "Read",
        note: conditions[0].message.clone(),
        job: None,
    };
    let mut delay = Duration::from_secs(1);
    for attempt in 1..=ATTEMPTS {
        let written = match api.patch_status(name, &params, &Patch::Apply(&patch)).await {
            Ok(_) => events::publish(client, reporter, &regarding, &event).await,
            Err(e) => Err(e),
        };
        match written {
            Ok(()) => return,
            // The object is gone: nothing left to say.
            Err(kube::Error::Api(e)) if e.code == 404 => return,
            Err(e) if attempt == ATTEMPTS => {
                tracing::warn!(namespace, name, error = %e, "could not say that the object cannot be read");
            }
            Err(_) => {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Sync, SyncSequence};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn unreadable(name: &str) -> Unreadable {
        Unreadable {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("revops".into()),
                generation: Some(3),
                ..Default::default()
            },
            error: "status.lastRun.phase: unknown variant `Paused`".into(),
            conditions: Vec::new(),
        }
    }

    fn name<K: Resource>(event: &watcher::Event<K>) -> String {
        use watcher::Event as E;
        match event {
            E::Apply(k) => format!("apply {}", k.meta().name.as_deref().unwrap()),
            E::InitApply(k) => format!("init-apply {}", k.meta().name.as_deref().unwrap()),
            E::Delete(k) => format!("delete {}", k.meta().name.as_deref().unwrap()),
            E::Init => "init".into(),
            E::InitDone => "init-done".into(),
        }
    }

    #[test]
    fn an_unreadable_object_leaves_the_cache_and_a_readable_one_goes_in() {
        use watcher::Event as E;
        let set_aside = SetAside::log_only();
        let readable = SyncSequence::shell(ObjectMeta {
            name: Some("crm".into()),
            ..Default::default()
        });
        let events = [
            E::Init,
            E::InitApply(Readable::Read(readable.clone())),
            E::InitApply(Readable::Unreadable(Box::new(unreadable("ads")))),
            E::InitDone,
            E::Apply(Readable::Unreadable(Box::new(unreadable("crm")))),
            E::Apply(Readable::Read(readable)),
            E::Delete(Readable::Unreadable(Box::new(unreadable("ads")))),
        ];
        let seen: Vec<String> = events
            .into_iter()
            .filter_map(|e| set_aside.event::<SyncSequence>(e))
            .map(|e| name(&e))
            .collect();
        assert_eq!(
            seen,
            [
                "init",
                "init-apply crm",
                "init-done",
                "delete crm",
                "apply crm",
                "delete ads"
            ]
        );
        let sync =
            set_aside.event::<Sync>(E::Apply(Readable::Unreadable(Box::new(unreadable("a")))));
        assert_eq!(name(&sync.unwrap()), "delete a");
    }

    #[test]
    fn the_conditions_are_said_once_per_reason() {
        let now = Timestamp::UNIX_EPOCH;
        let mut object = unreadable("crm");
        let said = conditions(&object, now).expect("not said yet");
        assert_eq!(
            said.iter()
                .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
                .collect::<Vec<_>>(),
            [
                ("Ready", "False", OBJECT_UNREADABLE),
                ("Stalled", "True", OBJECT_UNREADABLE)
            ]
        );
        assert!(said[1].message.contains("unknown variant `Paused`"));
        assert_eq!(said[1].observed_generation, Some(3));
        object.conditions = said;
        assert!(conditions(&object, now).is_none(), "already on the object");
        object.error = "status.lastRun.phase: unknown variant `Held`".into();
        assert!(
            conditions(&object, now).is_some(),
            "a new reason is said again"
        );
    }
}
