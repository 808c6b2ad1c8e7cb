//! Caches fed from the watch events and indexed by what the reconciles look up: the Jobs an
//! object controls (by owner UID), the Pods of a Job (by owner UID), the Jobs and Pods of a
//! Sync, the sequences that run a Sync and those that wait for it, and the sequences and Syncs
//! that run after an upstream.
//! A reconcile reads its own entries only, so nothing it does grows with the number of
//! unrelated objects in the cluster.
//!
//! A cache applies watch events the way kube-runtime's reflector store does (a relist replaces
//! the whole content when it is done), and keeps what [`Indexed::keys`] says an entry is found
//! by. Lookups return entries sorted by name, so that decisions do not depend on hash order.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use crate::api::{AfterSpec, StepPhase, SyncSequence, UpstreamRef};

/// What an entry is found by, besides its namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum IndexKey {
    /// The UID of the object's controller owner.
    Owner(String),
    /// A Sync the entry is about (the `syncseq.dev/sync` label, or a step's `syncRef`).
    Sync(String),
    /// An upstream the entry runs after (`spec.after`).
    Upstream(UpstreamRef),
    /// A Sync a step of the sequence's current run waits for (a step in phase `Waiting`).
    WaitingFor(String),
}

/// An entry of a cache.
pub(crate) trait Indexed {
    fn keys(&self) -> Vec<IndexKey>;
}

/// What the sequence cache keeps of a sequence: the Syncs its steps run, by which it is found
/// when one of them changes, and the Syncs its current run waits for, by which it is found
/// when one of them becomes free. (The sequences themselves are in the controller's own
/// store.)
pub(crate) struct SyncRefs {
    runs: Vec<String>,
    waits_for: Vec<String>,
}

impl SyncRefs {
    pub(crate) fn of(seq: &SyncSequence) -> Self {
        let mut runs: Vec<String> = seq
            .spec
            .steps
            .iter()
            .map(|s| s.sync_ref.name.clone())
            .collect();
        runs.sort();
        runs.dedup();
        SyncRefs {
            runs,
            waits_for: waits_for(seq),
        }
    }
}

/// The Syncs of the steps of a sequence's current run that wait (for their Sync to be free,
/// to be found, or for a retry's delay: a superset of what a Sync becoming free can unblock),
/// sorted, each once.
pub(crate) fn waits_for(seq: &SyncSequence) -> Vec<String> {
    let mut syncs: Vec<String> = seq
        .status
        .as_ref()
        .and_then(|s| s.book.current_run.as_deref())
        .map(|run| {
            run.steps
                .iter()
                .filter(|s| s.phase == StepPhase::Waiting)
                .map(|s| s.sync.clone())
                .collect()
        })
        .unwrap_or_default();
    syncs.sort();
    syncs.dedup();
    syncs
}

impl Indexed for SyncRefs {
    fn keys(&self) -> Vec<IndexKey> {
        let runs = self.runs.iter().cloned().map(IndexKey::Sync);
        runs.chain(self.waits_for.iter().cloned().map(IndexKey::WaitingFor))
            .collect()
    }
}

/// What the downstream caches keep of a sequence or Sync: the upstreams it runs after, by
/// which it is found when one of them finishes a run.
pub(crate) struct AfterRefs(Vec<UpstreamRef>);

impl AfterRefs {
    pub(crate) fn of(after: Option<&AfterSpec>) -> Self {
        AfterRefs(after.map(|a| a.upstreams.clone()).unwrap_or_default())
    }
}

impl Indexed for AfterRefs {
    fn keys(&self) -> Vec<IndexKey> {
        self.0.iter().cloned().map(IndexKey::Upstream).collect()
    }
}

/// (namespace, name)
type Name = (String, String);

struct State<T> {
    entries: HashMap<Name, Arc<T>>,
    /// (namespace, key) -> names.
    index: HashMap<(String, IndexKey), BTreeSet<String>>,
    /// Entries listed so far by a relist in progress.
    relist: Option<HashMap<Name, Arc<T>>>,
}

impl<T> Default for State<T> {
    fn default() -> Self {
        State {
            entries: HashMap::new(),
            index: HashMap::new(),
            relist: None,
        }
    }
}

impl<T: Indexed> State<T> {
    fn insert(&mut self, name: Name, entry: Arc<T>) -> Option<Arc<T>> {
        let old = self.remove(&name);
        for key in entry.keys() {
            self.index
                .entry((name.0.clone(), key))
                .or_default()
                .insert(name.1.clone());
        }
        self.entries.insert(name, entry);
        old
    }

    fn remove(&mut self, name: &Name) -> Option<Arc<T>> {
        let old = self.entries.remove(name)?;
        for key in old.keys() {
            let slot = (name.0.clone(), key);
            if let Some(names) = self.index.get_mut(&slot) {
                names.remove(&name.1);
                if names.is_empty() {
                    self.index.remove(&slot);
                }
            }
        }
        Some(old)
    }
}

/// What one watch event did to an object's entry: the entry it replaced or removed, and the
/// one it put.
pub(crate) struct Change<T> {
    pub(crate) before: Option<Arc<T>>,
    pub(crate) after: Option<Arc<T>>,
}

impl<T> Change<T> {
    /// A list's start or end: no entry of its own.
    const NONE: Self = Change {
        before: None,
        after: None,
    };

    /// Whether the entry is other than before: it appeared, went, or changed.
    pub(crate) fn changed(&self) -> bool
    where
        T: PartialEq,
    {
        self.before != self.after
    }
}

/// A cache of `T`, made from watch events of `K` (`T` may be `K` itself, or a compact form).
pub(crate) struct Cache<T> {
    state: RwLock<State<T>>,
    ready: tokio::sync::watch::Sender<bool>,
}

impl<T> Default for Cache<T> {
    fn default() -> Self {
        Cache {
            state: RwLock::new(State::default()),
            ready: tokio::sync::watch::Sender::new(false),
        }
    }
}

impl<T: Indexed> Cache<T> {
    /// Applies one watch event; `project` makes the entry kept for an object. Returns what the
    /// event did to the object's entry, so that a caller can tell whether it changed anything.
    /// A relist's objects are compared with the entries held before it, which stay until it is
    /// done.
    pub(crate) fn apply<K: Resource>(
        &self,
        event: &watcher::Event<K>,
        project: impl Fn(&K) -> T,
    ) -> Change<T> {
        let name = |obj: &K| (obj.namespace().unwrap_or_default(), obj.name_any());
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        match event {
            watcher::Event::Apply(obj) => {
                let after = Arc::new(project(obj));
                let before = st.insert(name(obj), after.clone());
                Change {
                    before,
                    after: Some(after),
                }
            }
            watcher::Event::Delete(obj) => Change {
                before: st.remove(&name(obj)),
                after: None,
            },
            watcher::Event::Init => {
                st.relist = Some(HashMap::new());
                Change::NONE
            }
            watcher::Event::InitApply(obj) => {
                let (name, after) = (name(obj), Arc::new(project(obj)));
                let before = st.entries.get(&name).cloned();
                st.relist
                    .get_or_insert_with(HashMap::new)
                    .insert(name, after.clone());
                Change {
                    before,
                    after: Some(after),
                }
            }
            watcher::Event::InitDone => {
                let listed = st.relist.take().unwrap_or_default();
                let mut fresh = State::default();
                for (name, entry) in listed {
                    fresh.insert(name, entry);
                }
                *st = fresh;
                drop(st);
                self.ready.send_replace(true);
                Change::NONE
            }
        }
    }

    /// The entries of a namespace found by `key`, sorted by name.
    pub(crate) fn find(&self, namespace: &str, key: &IndexKey) -> Vec<Arc<T>> {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        st.index
            .get(&(namespace.to_string(), key.clone()))
            .into_iter()
            .flatten()
            .filter_map(|name| {
                st.entries
                    .get(&(namespace.to_string(), name.clone()))
                    .cloned()
            })
            .collect()
    }

    /// The names of the entries of a namespace found by `key`, sorted.
    pub(crate) fn names(&self, namespace: &str, key: &IndexKey) -> Vec<String> {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        st.index
            .get(&(namespace.to_string(), key.clone()))
            .map(|names| names.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub(crate) fn get(&self, namespace: &str, name: &str) -> Option<Arc<T>> {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        st.entries
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// Waits until the first list is complete.
    pub(crate) async fn wait_until_ready(&self) {
        let mut ready = self.ready.subscribe();
        let _ = ready.wait_for(|r| *r).await;
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::Job;

    use super::*;
    use crate::api::labels;
    use crate::controller::compact::JobEntry;

    fn job(ns: &str, name: &str, owner: &str, sync: &str) -> Job {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "namespace": ns, "name": name,
                "labels": {labels::SYNC: sync},
                "ownerReferences": [{
                    "apiVersion": "syncseq.dev/v1alpha1", "kind": "SyncSequence",
                    "name": "crm", "uid": owner, "controller": true,
                }],
            },
        }))
        .unwrap()
    }

    fn names(found: Vec<Arc<JobEntry>>) -> Vec<String> {
        found.iter().map(|j| j.name.clone()).collect()
    }

    fn owner(uid: &str) -> IndexKey {
        IndexKey::Owner(uid.into())
    }

    fn sync(name: &str) -> IndexKey {
        IndexKey::Sync(name.into())
    }

    #[test]
    fn a_sequence_is_found_by_the_syncs_it_runs_and_by_those_its_current_run_waits_for() {
        use crate::engine::fixtures::{sequence, step};
        let mut seq = sequence(vec![step("accounts"), step("contacts"), step("accounts")]);
        let keys = |seq: &SyncSequence| SyncRefs::of(seq).keys();
        assert_eq!(keys(&seq), vec![sync("accounts"), sync("contacts")]);
        seq.status = serde_json::from_value(serde_json::json!({
            "currentRun": {"id": 1, "trigger": "Manual", "startTime": "2026-12-01T10:00:00Z",
                "phase": "Running", "progress": "1/3", "steps": [
                    {"name": "a", "sync": "accounts", "phase": "Succeeded", "attempts": 1},
                    {"name": "b", "sync": "contacts", "phase": "Waiting", "attempts": 0},
                    {"name": "c", "sync": "accounts", "phase": "Pending", "attempts": 0},
                ]},
        }))
        .unwrap();
        assert_eq!(
            keys(&seq),
            vec![
                sync("accounts"),
                sync("contacts"),
                IndexKey::WaitingFor("contacts".into())
            ]
        );
        let cache = Cache::<SyncRefs>::default();
        cache.apply(&watcher::Event::Apply(seq), SyncRefs::of);
        let waiting = IndexKey::WaitingFor("contacts".into());
        assert_eq!(cache.names("revops", &waiting), vec!["crm".to_string()]);
        assert!(
            cache
                .names("revops", &IndexKey::WaitingFor("accounts".into()))
                .is_empty(),
            "running accounts later is not waiting for it"
        );
    }

    #[test]
    fn entries_are_found_by_owner_and_by_sync_within_their_namespace() {
        let cache = Cache::<JobEntry>::default();
        for j in [
            job("a", "crm-2", "u1", "accounts"),
            job("a", "crm-1", "u1", "contacts"),
            job("a", "other", "u2", "accounts"),
            job("b", "crm-1", "u1", "accounts"),
        ] {
            cache.apply(&watcher::Event::Apply(j), JobEntry::of);
        }
        assert_eq!(
            names(cache.find("a", &owner("u1"))),
            ["crm-1", "crm-2"],
            "sorted by name"
        );
        assert_eq!(
            names(cache.find("a", &sync("accounts"))),
            ["crm-2", "other"]
        );
        assert_eq!(names(cache.find("b", &sync("accounts"))), ["crm-1"]);
        assert!(cache.find("c", &owner("u1")).is_empty());
        assert!(cache.get("a", "other").is_some());
    }

    #[test]
    fn an_update_moves_an_entry_between_keys_and_a_delete_removes_it_everywhere() {
        let cache = Cache::<JobEntry>::default();
        cache.apply(
            &watcher::Event::Apply(job("a", "j", "u1", "accounts")),
            JobEntry::of,
        );
        cache.apply(
            &watcher::Event::Apply(job("a", "j", "u2", "contacts")),
            JobEntry::of,
        );
        assert!(cache.find("a", &owner("u1")).is_empty());
        assert!(cache.find("a", &sync("accounts")).is_empty());
        assert_eq!(names(cache.find("a", &owner("u2"))), ["j"]);
        cache.apply(
            &watcher::Event::Delete(job("a", "j", "u2", "contacts")),
            JobEntry::of,
        );
        assert!(cache.find("a", &owner("u2")).is_empty());
        assert!(cache.names("a", &sync("contacts")).is_empty());
        assert!(cache.get("a", "j").is_none());
        let st = cache.state.read().unwrap();
        assert!(st.index.is_empty(), "no empty index slots are left behind");
    }

    #[tokio::test]
    async fn a_relist_replaces_the_content_when_done_and_makes_the_cache_ready() {
        let cache = Cache::<JobEntry>::default();
        cache.apply(
            &watcher::Event::Apply(job("a", "gone", "u1", "accounts")),
            JobEntry::of,
        );
        cache.apply(&watcher::Event::Init, JobEntry::of);
        cache.apply(
            &watcher::Event::InitApply(job("a", "kept", "u1", "accounts")),
            JobEntry::of,
        );
        // Until the relist is done, the cache answers from what it had.
        assert_eq!(names(cache.find("a", &owner("u1"))), ["gone"]);
        cache.apply(&watcher::Event::InitDone, JobEntry::of);
        assert_eq!(names(cache.find("a", &owner("u1"))), ["kept"]);
        tokio::time::timeout(std::time::Duration::from_secs(1), cache.wait_until_ready())
            .await
            .expect("ready after the first list");
    }

    #[test]
    fn a_sequence_is_found_by_each_sync_its_steps_run_once() {
        let seq: SyncSequence = serde_json::from_value(serde_json::json!({
            "apiVersion": "syncseq.dev/v1alpha1", "kind": "SyncSequence",
            "metadata": {"namespace": "a", "name": "crm"},
            "spec": {"steps": [
                {"name": "one", "syncRef": {"name": "accounts"}},
                {"name": "two", "syncRef": {"name": "contacts"}},
                {"name": "three", "syncRef": {"name": "accounts"}},
            ]},
        }))
        .unwrap();
        let cache = Cache::<SyncRefs>::default();
        cache.apply(&watcher::Event::Apply(seq), SyncRefs::of);
        assert_eq!(cache.names("a", &sync("accounts")), ["crm"]);
        assert_eq!(cache.names("a", &sync("contacts")), ["crm"]);
        assert!(cache.names("a", &sync("workspaces")).is_empty());
    }
}
