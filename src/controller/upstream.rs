//! What the upstreams of an object (`spec.after`) show, read from the caches: their finished
//! runs (a webhook receiver's deliveries), and whether runs would loop back to the object (a
//! cycle of `after` references, or a sequence after a Sync that one of its own steps runs).

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use super::Context;
use super::index::IndexKey;
use crate::api::{AfterSpec, RunPhase, SyncRunRecord, UpstreamKind, UpstreamRef};
use crate::engine::{FinishedRun, UpstreamView, Upstreams, find_cycle};

/// The upstreams of `me` (of `namespace`) as the caches show them.
pub(crate) fn observe(
    ctx: &Context,
    namespace: &str,
    me: UpstreamRef,
    after: Option<&AfterSpec>,
) -> Upstreams {
    let Some(after) = after else {
        return Upstreams::default();
    };
    Upstreams {
        views: after
            .upstreams
            .iter()
            .filter_map(|up| Some((up.clone(), view(ctx, namespace, up)?)))
            .collect(),
        cycle: find_cycle(
            &me,
            after,
            |up| runners(ctx, namespace, up),
            |up| after_of(ctx, namespace, up),
        ),
    }
}

/// Where the named object of `namespace` is in a store.
fn at<K: kube::Resource<DynamicType = ()>>(namespace: &str, name: &str) -> ObjectRef<K> {
    ObjectRef::new(name).within(namespace)
}

fn view(ctx: &Context, namespace: &str, up: &UpstreamRef) -> Option<UpstreamView> {
    match up.kind {
        UpstreamKind::SyncSequence => {
            let seq = ctx.sequences.get(&at(namespace, &up.name))?;
            let finished = seq
                .status
                .iter()
                .flat_map(|s| &s.book.runs)
                .map(|r| FinishedRun {
                    id: r.id.to_string(),
                    phase: r.phase,
                    completion: r.completion_time.as_ref().map(|t| t.0),
                })
                .collect();
            Some(UpstreamView {
                uid: seq.uid(),
                finished,
            })
        }
        UpstreamKind::Sync => {
            let sync = ctx.syncs.get(&at(namespace, &up.name))?;
            let st = sync.status.as_ref();
            let record = |r: Option<&SyncRunRecord>, phase| {
                r.map(|r| FinishedRun {
                    id: r.job_name.clone(),
                    phase,
                    completion: r.completion_time.as_ref().map(|t| t.0),
                })
            };
            let mut finished: Vec<FinishedRun> = [
                record(
                    st.and_then(|s| s.last_succeeded_run.as_deref()),
                    RunPhase::Succeeded,
                ),
                record(
                    st.and_then(|s| s.last_failed_run.as_deref()),
                    RunPhase::Failed,
                ),
            ]
            .into_iter()
            .flatten()
            .collect();
            finished.sort_by_key(|r| std::cmp::Reverse(r.completion));
            Some(UpstreamView {
                uid: sync.uid(),
                finished,
            })
        }
        UpstreamKind::WebhookReceiver => {
            let receiver = ctx.receivers.get(&at(namespace, &up.name))?;
            let finished = receiver
                .status
                .iter()
                .flat_map(|s| &s.deliveries)
                .map(|d| FinishedRun {
                    id: d.id.clone(),
                    phase: d.phase,
                    completion: Some(d.received_time.0),
                })
                .collect();
            Some(UpstreamView {
                uid: receiver.uid(),
                finished,
            })
        }
    }
}

/// The objects whose runs finish `up`: a sequence itself; a Sync itself and every sequence
/// with a step that runs it.
fn runners(ctx: &Context, namespace: &str, up: &UpstreamRef) -> Vec<UpstreamRef> {
    let mut out = vec![up.clone()];
    if up.kind == UpstreamKind::Sync {
        let key = IndexKey::Sync(up.name.clone());
        out.extend(
            ctx.sequences_by_sync
                .names(namespace, &key)
                .into_iter()
                .map(|name| UpstreamRef {
                    kind: UpstreamKind::SyncSequence,
                    name,
                }),
        );
    }
    out
}

/// The `after` of an upstream, if it exists and has one.
fn after_of(ctx: &Context, namespace: &str, up: &UpstreamRef) -> Option<AfterSpec> {
    match up.kind {
        UpstreamKind::SyncSequence => ctx
            .sequences
            .get(&at(namespace, &up.name))?
            .spec
            .scheduling
            .after
            .clone(),
        UpstreamKind::Sync => ctx
            .syncs
            .get(&at(namespace, &up.name))?
            .spec
            .scheduling
            .after
            .clone(),
        // A receiver's deliveries come from outside: it runs after nothing.
        UpstreamKind::WebhookReceiver => None,
    }
}
