//! Who runs after whom (`spec.after`), and the wake-ups sent when an upstream finishes a run
//! (for a webhook receiver: accepts a delivery):
//! the sequences and Syncs that run after it are reconciled, and only they. A status write of
//! an upstream that finishes no run (each step's progress) wakes nobody.

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use tokio::sync::mpsc::UnboundedSender;

use super::index::{AfterRefs, Cache, IndexKey};
use super::triggers::{self, Seen};
use crate::api::{Sync, SyncSequence, UpstreamKind, UpstreamRef, WebhookReceiver};

/// The downstream objects of every upstream, fed from the sequence and Sync watches.
pub(crate) struct Downstreams {
    sequences: Cache<AfterRefs>,
    syncs: Cache<AfterRefs>,
    finished_sequences: Seen,
    finished_syncs: Seen,
    delivered: Seen,
    wake_sequence: UnboundedSender<ObjectRef<SyncSequence>>,
    wake_sync: UnboundedSender<ObjectRef<Sync>>,
}

impl Downstreams {
    pub(crate) fn new(
        wake_sequence: UnboundedSender<ObjectRef<SyncSequence>>,
        wake_sync: UnboundedSender<ObjectRef<Sync>>,
    ) -> Self {
        Downstreams {
            sequences: Cache::default(),
            syncs: Cache::default(),
            finished_sequences: Seen::default(),
            finished_syncs: Seen::default(),
            delivered: Seen::default(),
            wake_sequence,
            wake_sync,
        }
    }

    /// A sequence watch event: it may run after others, and others may run after it.
    pub(crate) fn sequence_event(&self, event: &watcher::Event<SyncSequence>) {
        self.sequences
            .apply(event, |s| AfterRefs::of(s.spec.scheduling.after.as_ref()));
        self.upstream_event(
            event,
            UpstreamKind::SyncSequence,
            &self.finished_sequences,
            triggers::sequence_finished,
        );
    }

    /// A Sync watch event.
    pub(crate) fn sync_event(&self, event: &watcher::Event<Sync>) {
        self.syncs
            .apply(event, |s| AfterRefs::of(s.spec.scheduling.after.as_ref()));
        self.upstream_event(
            event,
            UpstreamKind::Sync,
            &self.finished_syncs,
            triggers::sync_finished,
        );
    }

    /// A webhook receiver watch event: only others run after it.
    pub(crate) fn receiver_event(&self, event: &watcher::Event<WebhookReceiver>) {
        self.upstream_event(
            event,
            UpstreamKind::WebhookReceiver,
            &self.delivered,
            triggers::receiver_delivered,
        );
    }

    fn upstream_event<K: kube::Resource>(
        &self,
        event: &watcher::Event<K>,
        kind: UpstreamKind,
        seen: &Seen,
        fingerprint: impl Fn(&K) -> u64,
    ) {
        let (obj, gone) = match event {
            watcher::Event::Apply(obj) | watcher::Event::InitApply(obj) => (obj, false),
            watcher::Event::Delete(obj) => (obj, true),
            watcher::Event::Init | watcher::Event::InitDone => return,
        };
        let ns = obj.namespace().unwrap_or_default();
        let up = IndexKey::Upstream(UpstreamRef {
            kind,
            name: obj.name_any(),
        });
        let sequences = self.sequences.names(&ns, &up);
        let syncs = self.syncs.names(&ns, &up);
        if sequences.is_empty() && syncs.is_empty() {
            return;
        }
        // A deleted upstream wakes its downstreams (they report it missing); so does one that
        // appears, or one whose finished runs changed.
        if !(seen.changed(obj, fingerprint(obj)) || gone) {
            return;
        }
        for name in sequences {
            let _ = self.wake_sequence.send(ObjectRef::new(&name).within(&ns));
        }
        for name in syncs {
            let _ = self.wake_sync.send(ObjectRef::new(&name).within(&ns));
        }
    }
}
