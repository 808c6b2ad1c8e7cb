//! Jobs for steps: deterministic names, labels, owner reference, built from the Sync's template.
//!
//! The name is a pure function of (owner kind, owner, owner UID, run, step, attempt), so a
//! controller that restarts between deciding and creating simply gets `AlreadyExists` on a
//! second create — never a second Job for the same attempt. The kind is part of it so that a
//! Sync `x`'s own run and a sequence `x`'s step `run` never share a name; the UID so that an
//! object deleted with `--cascade=orphan` and created again under its name (a GitOps migration)
//! does not find its run 1's names taken by its predecessor's orphaned Jobs.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use sha2::{Digest, Sha256};

use crate::api::{Sync, annotations, labels};

/// Job names end up in the `batch.kubernetes.io/job-name` Pod label, so they must fit a label
/// value: 63 characters.
const MAX_NAME: usize = 63;

/// The name of a step attempt's Job: a readable `<owner>-<run>-<step>-<attempt>` prefix (cut to
/// fit) and a hash of the exact identity, owner kind and UID included. The hash keeps names
/// distinct where the readable part is ambiguous (owner `a-1` run 2 vs owner `a` run 1 step
/// `2-…`), was cut, or is the same for two kinds or for two objects that bore the same name one
/// after the other. Nothing computes the name again to find a Job (Jobs are matched by owner
/// UID and labels; status keeps the name a create used), so a run in progress when the name's
/// recipe changed keeps the Job it has.
pub(crate) fn job_name(
    kind: &str,
    owner: &str,
    uid: &str,
    run: i64,
    step: &str,
    attempt: i32,
) -> String {
    let digest =
        Sha256::digest(format!("{kind}\n{owner}\n{uid}\n{run}\n{step}\n{attempt}").as_bytes());
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let readable = format!("{owner}-{run}-{step}-{attempt}");
    let keep = readable.len().min(MAX_NAME - hash.len() - 1);
    let prefix = readable[..keep].trim_end_matches('-');
    format!("{prefix}-{hash}")
}

/// Everything that identifies a step attempt's Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JobIdentity {
    pub name: String,
    pub run: i64,
    pub step: String,
    pub sync: String,
    pub attempt: i32,
}

/// The owner of a Job: a SyncSequence (or a Sync, for standalone runs).
#[derive(Debug, Clone)]
pub(crate) struct JobOwner {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
    pub namespace: String,
}

/// Builds the Job for a step attempt from the Sync's template.
///
/// syncseq's labels go on the Job and on its Pod template (so Pods can be watched by label);
/// the template's own labels and annotations are kept. The step timeout becomes the Job's
/// `activeDeadlineSeconds`, so the Job controller enforces it and reports `DeadlineExceeded`.
/// A scheduled run's fire time goes on the Job as an annotation, so that anyone can tell how
/// late a fire was from the Job alone.
pub(crate) fn build_job(
    owner: &JobOwner,
    id: &JobIdentity,
    sync: &Sync,
    timeout_seconds: Option<i64>,
    scheduled: Option<Timestamp>,
) -> Job {
    let template = sync.spec.job_template.spec();
    let mut ids = BTreeMap::new();
    ids.insert(labels::RUN.to_string(), id.run.to_string());
    ids.insert(labels::STEP.to_string(), id.step.clone());
    ids.insert(labels::SYNC.to_string(), id.sync.clone());
    ids.insert(labels::ATTEMPT.to_string(), id.attempt.to_string());
    ids.insert(labels::MANAGED_BY.to_string(), labels::MANAGER.to_string());
    if owner.kind == "SyncSequence" {
        ids.insert(labels::SEQUENCE.to_string(), owner.name.clone());
    }

    let mut spec: JobSpec = template.spec.unwrap_or_default();
    if let Some(t) = timeout_seconds {
        spec.active_deadline_seconds = Some(t);
    }
    let pod_meta = spec.template.metadata.get_or_insert_with(Default::default);
    pod_meta
        .labels
        .get_or_insert_with(Default::default)
        .extend(ids.clone());

    let template_meta = template.metadata.unwrap_or_default();
    let mut job_labels = template_meta.labels.unwrap_or_default();
    job_labels.extend(ids);
    let mut job_annotations = template_meta.annotations;
    if let Some(at) = scheduled {
        job_annotations
            .get_or_insert_with(Default::default)
            .insert(annotations::SCHEDULED_TIMESTAMP.to_string(), at.to_string());
    }

    Job {
        metadata: ObjectMeta {
            name: Some(id.name.clone()),
            namespace: Some(owner.namespace.clone()),
            labels: Some(job_labels),
            annotations: job_annotations,
            owner_references: Some(vec![OwnerReference {
                api_version: owner.api_version.clone(),
                kind: owner.kind.clone(),
                name: owner.name.clone(),
                uid: owner.uid.clone(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn short_names_are_readable() {
        let name = job_name("SyncSequence", "crm-hourly", "u1", 12, "accounts", 1);
        assert!(name.starts_with("crm-hourly-12-accounts-1-"), "{name}");
        assert_eq!(name.len(), "crm-hourly-12-accounts-1-".len() + 8);
    }

    #[test]
    fn ambiguous_readable_parts_still_differ() {
        assert_ne!(
            job_name("SyncSequence", "a-1", "u1", 2, "x", 1),
            job_name("SyncSequence", "a", "u1", 1, "2-x", 1)
        );
        assert_ne!(
            job_name("Sync", "x", "u1", 1, "run", 1),
            job_name("SyncSequence", "x", "u1", 1, "run", 1),
            "a Sync's own run and a sequence's step of the same names"
        );
    }

    #[test]
    fn an_object_created_again_under_its_name_names_its_jobs_anew() {
        // `mig` deleted with `--cascade=orphan` and applied again: a new UID, the same run 1.
        let before = job_name("SyncSequence", "mig", "uid-before", 1, "s", 1);
        let after = job_name("SyncSequence", "mig", "uid-after", 1, "s", 1);
        assert_ne!(before, after, "the orphans keep the names they have");
        let readable = |n: &str| n[..n.rfind('-').unwrap()].to_string();
        assert_eq!(readable(&before), "mig-1-s-1");
        assert_eq!(readable(&after), "mig-1-s-1", "the UID is in the hash only");
    }

    #[test]
    fn long_names_are_hashed_within_63() {
        let owner = "a".repeat(60);
        let n1 = job_name("SyncSequence", &owner, "u1", 1, "accounts", 1);
        let n2 = job_name("SyncSequence", &owner, "u1", 1, "accounts", 2);
        assert!(n1.len() <= 63 && n2.len() <= 63);
        assert_ne!(n1, n2);
        assert_eq!(n1, job_name("SyncSequence", &owner, "u1", 1, "accounts", 1));
    }

    proptest! {
        #[test]
        fn names_are_valid_labels_and_injective(
            owner in "[a-z][a-z0-9-]{0,61}[a-z0-9]",
            run in 1i64..1_000_000,
            step in "[a-z]([a-z0-9-]{0,61}[a-z0-9])?",
            attempt in 1i32..12,
            uid in "[0-9a-f]{8}",
        ) {
            let name = job_name("SyncSequence", &owner, &uid, run, &step, attempt);
            prop_assert!(name.len() <= 63);
            prop_assert!(name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
            prop_assert!(!name.ends_with('-'));
            prop_assert_ne!(name.clone(), job_name("SyncSequence", &owner, &uid, run + 1, &step, attempt));
            prop_assert_ne!(name.clone(), job_name("SyncSequence", &owner, &uid, run, &step, attempt + 1));
            prop_assert_ne!(name, job_name("SyncSequence", &owner, &format!("{uid}-x"), run, &step, attempt));
        }
    }
}
