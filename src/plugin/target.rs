//! What a plugin command acts on: a SyncSequence (a bare name, as before) or a standalone Sync
//! (`sync/NAME`), and one view of either kind's run bookkeeping for the commands and the output.
//!
//! Both kinds keep their runs in the same `RunBook`; a sequence also keeps its last finished
//! run in full (`status.lastRun`), a Sync a record of its last Job, whoever started it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{
    ConcurrencyPolicy, RunBook, RunStatus, ScheduleSpec, ScheduleStatus, Step, Sync, SyncClaim,
    SyncRunRecord, SyncSequence,
};

/// The two kinds the plugin handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    SyncSequence,
    Sync,
}

impl Kind {
    /// The kind's name in `kind/name` references, as kubectl prints them.
    pub fn short(self) -> &'static str {
        match self {
            Kind::SyncSequence => "syncsequence",
            Kind::Sync => "sync",
        }
    }
}

/// A named object of one kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: Kind,
    pub name: String,
}

impl Target {
    /// Parses `NAME` (a SyncSequence) or `TYPE/NAME` with TYPE one of the names kubectl knows
    /// the kinds by: `syncsequence`, `syncsequences`, `sseq` (and the `.syncseq.dev` forms),
    /// `sync`, `syncs`.
    pub fn parse(arg: &str) -> Result<Target, String> {
        let (kind, name) = match arg.split_once('/') {
            None => (Kind::SyncSequence, arg),
            Some((kind, name)) => {
                let kind = match kind.strip_suffix(".syncseq.dev").unwrap_or(kind) {
                    "syncsequence" | "syncsequences" | "sseq" => Kind::SyncSequence,
                    "sync" | "syncs" => Kind::Sync,
                    other => {
                        return Err(format!(
                            "unknown kind {other:?}: expected NAME (a SyncSequence), \
                             syncsequence/NAME or sync/NAME"
                        ));
                    }
                };
                (kind, name)
            }
        };
        if name.is_empty() || name.contains('/') {
            return Err(format!(
                "{arg:?} is not a name: expected NAME, syncsequence/NAME or sync/NAME"
            ));
        }
        Ok(Target {
            kind,
            name: name.to_string(),
        })
    }
}

impl Target {
    /// As kubectl names objects in its output: `syncsequence.syncseq.dev/crm`.
    pub fn reference(&self) -> String {
        format!("{}.{}/{}", self.kind.short(), crate::api::GROUP, self.name)
    }
}

/// One object's runs, whichever its kind.
#[derive(Debug, Clone)]
pub(crate) struct Runnable {
    pub target: Target,
    pub namespace: String,
    pub uid: Option<String>,
    /// When it was created: a set of several schedules counts its `@every` members from it.
    pub created: Option<jiff::Timestamp>,
    pub scheduling: ScheduleSpec,
    /// What a trigger does while a run is in progress (a Sync's own runs: Forbid).
    pub concurrency: ConcurrencyPolicy,
    /// A sequence's steps as the spec has them now (a Sync: none; its run's one step has no
    /// parents).
    pub steps: Vec<Step>,
    pub schedule: ScheduleStatus,
    pub book: RunBook,
    /// A sequence's last finished run, with its steps.
    pub last_run: Option<RunStatus>,
    /// A Sync's last Job, whoever started it (its schedule, a request, a sequence).
    pub last_job: Option<SyncRunRecord>,
    /// What holds a Sync now.
    pub claim: Option<SyncClaim>,
    /// When its last successful run ended (for a Sync, whoever started it).
    pub last_success: Option<Time>,
    /// The whole `status`, for `-o json|yaml|jsonpath`.
    pub status: serde_json::Value,
    /// Why the object could not be read, when it could not (a newer syncseq wrote it).
    pub unreadable: Option<String>,
}

impl Runnable {
    /// What a listing shows of an object this release cannot read: its name and why.
    pub(crate) fn unreadable(kind: Kind, object: &crate::api::Unreadable) -> Self {
        Runnable {
            target: Target {
                kind,
                name: object.metadata.name.clone().unwrap_or_default(),
            },
            namespace: object.metadata.namespace.clone().unwrap_or_default(),
            uid: object.metadata.uid.clone(),
            created: None,
            scheduling: Default::default(),
            concurrency: Default::default(),
            steps: Vec::new(),
            schedule: Default::default(),
            book: Default::default(),
            last_run: None,
            last_job: None,
            claim: None,
            last_success: None,
            status: serde_json::Value::Null,
            unreadable: Some(object.error.clone()),
        }
    }

    /// Whether the Job is this object's: its owner reference names the object's UID (labels
    /// alone could be anyone's, or an earlier object's of the same name).
    pub(crate) fn owns(&self, job: &k8s_openapi::api::batch::v1::Job) -> bool {
        job.metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| Some(&o.uid) == self.uid.as_ref())
    }

    fn of<K>(kind: Kind, object: &crate::api::Readable<K>) -> Self
    where
        for<'a> Runnable: From<&'a K>,
    {
        match object {
            crate::api::Readable::Read(k) => Runnable::from(k),
            crate::api::Readable::Unreadable(u) => Runnable::unreadable(kind, u),
        }
    }
}

impl From<&crate::api::Readable<SyncSequence>> for Runnable {
    fn from(object: &crate::api::Readable<SyncSequence>) -> Self {
        Runnable::of(Kind::SyncSequence, object)
    }
}

impl From<&crate::api::Readable<Sync>> for Runnable {
    fn from(object: &crate::api::Readable<Sync>) -> Self {
        Runnable::of(Kind::Sync, object)
    }
}

fn status_json(status: &impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(status).unwrap_or_default()
}

impl From<&SyncSequence> for Runnable {
    fn from(seq: &SyncSequence) -> Self {
        let st = seq.status.clone().unwrap_or_default();
        Runnable {
            target: Target {
                kind: Kind::SyncSequence,
                name: seq.metadata.name.clone().unwrap_or_default(),
            },
            namespace: seq.metadata.namespace.clone().unwrap_or_default(),
            uid: seq.metadata.uid.clone(),
            created: seq.metadata.creation_timestamp.as_ref().map(|t| t.0),
            scheduling: seq.spec.scheduling.clone(),
            concurrency: seq.spec.concurrency_policy,
            steps: seq.spec.steps.clone(),
            status: status_json(&st),
            last_success: st.book.last_successful_time.clone(),
            schedule: st.schedule,
            book: st.book,
            last_run: st.last_run.map(|r| *r),
            last_job: None,
            claim: None,
            unreadable: None,
        }
    }
}

impl From<&Sync> for Runnable {
    fn from(sync: &Sync) -> Self {
        let st = sync.status.clone().unwrap_or_default();
        Runnable {
            target: Target {
                kind: Kind::Sync,
                name: sync.metadata.name.clone().unwrap_or_default(),
            },
            namespace: sync.metadata.namespace.clone().unwrap_or_default(),
            uid: sync.metadata.uid.clone(),
            created: sync.metadata.creation_timestamp.as_ref().map(|t| t.0),
            scheduling: sync.spec.scheduling.clone(),
            concurrency: ConcurrencyPolicy::Forbid,
            steps: Vec::new(),
            status: status_json(&st),
            last_success: st
                .last_succeeded_run
                .as_ref()
                .and_then(|r| r.completion_time.clone())
                .into_iter()
                .chain(st.book.last_successful_time.clone())
                .max_by_key(|t| t.0),
            schedule: st.schedule,
            book: st.book,
            last_run: None,
            last_job: st.last_run.map(|r| *r),
            claim: st.claim,
            unreadable: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_as_kubectl_spells_kinds() {
        let seq = |n: &str| Target {
            kind: Kind::SyncSequence,
            name: n.into(),
        };
        let sync = |n: &str| Target {
            kind: Kind::Sync,
            name: n.into(),
        };
        for (arg, want) in [
            ("crm", seq("crm")),
            ("syncsequence/crm", seq("crm")),
            ("syncsequences.syncseq.dev/crm", seq("crm")),
            ("sseq/crm", seq("crm")),
            ("sync/accounts", sync("accounts")),
            ("syncs.syncseq.dev/accounts", sync("accounts")),
        ] {
            assert_eq!(Target::parse(arg), Ok(want), "{arg}");
        }
        for bad in ["", "sync/", "/crm", "job/crm", "sync/a/b"] {
            assert!(Target::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(sync("accounts").reference(), "sync.syncseq.dev/accounts");
    }
}
