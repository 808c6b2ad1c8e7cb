//! Jobs for steps: deterministic names, labels, owner reference, built from the Sync's template.
//!
//! The name is a pure function of (owner kind, owner, owner UID, run, step, attempt), so a
//! controller that restarts between deciding and creating simply gets `AlreadyExists` on a
//! second create — never a second Job for the same attempt. The kind is part of it so that a
//! Sync `x`'s own run and a sequence `x`'s step `run` never share a name; the UID so that an
//! object deleted with `--cascade=orphan` and created again under its name (a GitOps migration)
//! does not find its run 1's names taken by its predecessor's orphaned Jobs.
//!
//! Every container of the Job learns the run it is part of from `SYNCSEQ_*` variables (the
//! run context): an incremental sync reads its data interval there.

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{EnvVar, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use sha2::{Digest, Sha256};

use crate::api::{Sync, TriggerKind, UpstreamRun, annotations, labels};
use crate::schedule::ScheduleSet;
use crate::text::printable;

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

/// What a step's Job tells its containers of the run, read from the run's status.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunFacts<'a> {
    pub trigger: TriggerKind,
    /// The fire time the run is for: a scheduled run's, or for a retry the retried run's.
    pub scheduled: Option<Timestamp>,
    /// The upstream run that started it.
    pub upstream: Option<&'a UpstreamRun>,
    /// The object's schedule as its spec has it now: the data interval starts at its fire
    /// time before `scheduled`.
    pub schedule: Option<&'a (ScheduleSet, TimeZone)>,
    /// The object's `jitterSeconds` offset: a scheduled run starts this long after its fire
    /// time.
    pub jitter: jiff::SignedDuration,
}

/// The names of the run context's variables.
pub(crate) mod env {
    pub(crate) const RUN: &str = "SYNCSEQ_RUN";
    pub(crate) const STEP: &str = "SYNCSEQ_STEP";
    pub(crate) const ATTEMPT: &str = "SYNCSEQ_ATTEMPT";
    pub(crate) const TRIGGER: &str = "SYNCSEQ_TRIGGER";
    pub(crate) const SCHEDULED_TIME: &str = "SYNCSEQ_SCHEDULED_TIME";
    pub(crate) const INTERVAL_START: &str = "SYNCSEQ_INTERVAL_START";
    pub(crate) const INTERVAL_END: &str = "SYNCSEQ_INTERVAL_END";
    pub(crate) const UPSTREAM: &str = "SYNCSEQ_UPSTREAM";
}

/// The run context of attempt `id`: run number, step (for a Sync's own run, the Sync: its
/// step's name is only the label `run`), attempt and trigger; the fire time and data interval
/// of a run that has one; what started an upstream-started run, as `Kind/name/run` (a
/// receiver's delivery id is the sender's text: control characters are dropped). Times are
/// RFC 3339 in UTC, like every time in status.
fn run_context(owner: &JobOwner, id: &JobIdentity, run: &RunFacts) -> Vec<EnvVar> {
    let step = match owner.kind.as_str() {
        "Sync" => &owner.name,
        _ => &id.step,
    };
    let mut vars = vec![
        (env::RUN, id.run.to_string()),
        (env::STEP, printable(step)),
        (env::ATTEMPT, id.attempt.to_string()),
        (env::TRIGGER, format!("{:?}", run.trigger)),
    ];
    if let Some(at) = run.scheduled {
        vars.push((env::SCHEDULED_TIME, at.to_string()));
        let start = run
            .schedule
            .and_then(|(schedule, tz)| schedule.previous_before(at, tz));
        vars.extend(start.map(|start| (env::INTERVAL_START, start.to_string())));
        vars.push((env::INTERVAL_END, at.to_string()));
    }
    if let Some(up) = run.upstream {
        let what = format!("{:?}/{}/{}", up.kind, up.name, up.run);
        vars.push((env::UPSTREAM, printable(&what)));
    }
    vars.into_iter()
        .map(|(name, value)| EnvVar {
            name: name.to_string(),
            value: Some(value),
            value_from: None,
        })
        .collect()
}

/// Puts the run context first in every container's and init container's `env`, so that the
/// template's own entries can use it (`$(SYNCSEQ_INTERVAL_START)`). A name the container's
/// `env` already has keeps the template's entry and gets no second one (Kubernetes would take
/// the last). `envFrom` is not looked at: explicit entries override it, so ours win there.
fn add_run_context(pod: &mut PodSpec, vars: &[EnvVar]) {
    let containers = pod
        .init_containers
        .iter_mut()
        .flatten()
        .chain(pod.containers.iter_mut());
    for container in containers {
        let env = container.env.get_or_insert_with(Vec::new);
        let ours: Vec<EnvVar> = vars
            .iter()
            .filter(|v| !env.iter().any(|e| e.name == v.name))
            .cloned()
            .collect();
        env.splice(0..0, ours);
    }
}

/// Builds the Job for a step attempt from the Sync's template.
///
/// syncseq's labels go on the Job and on its Pod template (so Pods can be watched by label);
/// the template's own labels and annotations are kept. The step timeout becomes the Job's
/// `activeDeadlineSeconds`, so the Job controller enforces it and reports `DeadlineExceeded`.
/// A scheduled or backfill run's fire time goes on the Job as an annotation, so that anyone can
/// tell from the Job alone which fire it is for and how late it started (not a retry's: its
/// Job is no fire, however late). Every
/// container gets the run context.
pub(crate) fn build_job(
    owner: &JobOwner,
    id: &JobIdentity,
    sync: &Sync,
    timeout_seconds: Option<i64>,
    run: &RunFacts,
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
    if let Some(pod) = spec.template.spec.as_mut() {
        add_run_context(pod, &run_context(owner, id, run));
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
    if let Some(at) = run
        .scheduled
        .filter(|_| matches!(run.trigger, TriggerKind::Schedule | TriggerKind::Backfill))
    {
        let annotations_of_job = job_annotations.get_or_insert_with(Default::default);
        annotations_of_job.insert(annotations::SCHEDULED_TIMESTAMP.to_string(), at.to_string());
        // How late the fire was meant to start, so that its delay can be read from the Job
        // alone: creation - (scheduled-timestamp + offset). A backfill run starts when its
        // turn comes, not at an offset.
        if run.trigger == TriggerKind::Schedule && !run.jitter.is_zero() {
            annotations_of_job.insert(
                annotations::JITTER_OFFSET.to_string(),
                format!("{}s", run.jitter.as_secs_f64()),
            );
        }
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
    use crate::api::UpstreamKind;
    use crate::engine::fixtures;
    use proptest::prelude::*;

    /// A Sync whose template has an init container and a container that sets `SYNCSEQ_STEP`
    /// and a variable of its own.
    fn sync_with_env() -> Sync {
        let mut sync = fixtures::sync("accounts");
        sync.spec.job_template = serde_json::from_value(serde_json::json!({
            "spec": {"template": {"spec": {
                "restartPolicy": "Never",
                "initContainers": [{"name": "wait", "image": "x"}],
                "containers": [{"name": "s", "image": "x", "env": [
                    {"name": "WAREHOUSE", "value": "prod"},
                    {"name": "SYNCSEQ_STEP", "value": "mine"},
                ]}],
            }}}
        }))
        .unwrap();
        sync
    }

    fn owner(kind: &str, name: &str) -> JobOwner {
        JobOwner {
            api_version: "syncseq.dev/v1alpha1".into(),
            kind: kind.into(),
            name: name.into(),
            uid: "u1".into(),
            namespace: "revops".into(),
        }
    }

    fn identity(step: &str) -> JobIdentity {
        JobIdentity {
            name: "crm-7-accounts-2-abcd".into(),
            run: 7,
            step: step.into(),
            sync: "accounts".into(),
            attempt: 2,
        }
    }

    /// Each container's `env` as (name, value), init containers first.
    fn envs(job: &Job) -> Vec<(String, Vec<(String, String)>)> {
        let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let pod = pod.clone();
        pod.init_containers
            .into_iter()
            .flatten()
            .chain(pod.containers)
            .map(|c| {
                let env = c.env.unwrap_or_default().into_iter();
                let env = env.map(|e| (e.name, e.value.unwrap_or_default()));
                (c.name, env.collect())
            })
            .collect()
    }

    fn scheduled_annotation(job: &Job) -> Option<String> {
        let annotations = job.metadata.annotations.as_ref()?;
        annotations.get(annotations::SCHEDULED_TIMESTAMP).cloned()
    }

    #[test]
    fn every_container_gets_the_run_context_and_the_templates_own_variables_win() {
        let hourly = crate::schedule::parse_set(
            Some("0 * * * *"),
            None,
            Some("Europe/Berlin"),
            Timestamp::UNIX_EPOCH,
        )
        .unwrap()
        .unwrap();
        let at: Timestamp = "2026-12-07T10:00:00Z".parse().unwrap();
        let from_dbt = UpstreamRun {
            kind: UpstreamKind::WebhookReceiver,
            name: "dbt-cloud".into(),
            run: "70403\u{1b}[2J104".into(),
        };
        let from_seq = UpstreamRun {
            kind: UpstreamKind::SyncSequence,
            name: "warehouse".into(),
            run: "12".into(),
        };
        let facts = |trigger, scheduled, upstream| RunFacts {
            trigger,
            scheduled,
            upstream,
            schedule: Some(&hourly),
            jitter: jiff::SignedDuration::ZERO,
        };
        // (case, facts, the variables after RUN, STEP and ATTEMPT, has the fire time annotation)
        type Case<'a> = (&'a str, RunFacts<'a>, Vec<(&'a str, &'a str)>, bool);
        let cases: Vec<Case> = vec![
            (
                "scheduled",
                facts(TriggerKind::Schedule, Some(at), None),
                vec![
                    ("SYNCSEQ_TRIGGER", "Schedule"),
                    ("SYNCSEQ_SCHEDULED_TIME", "2026-12-07T10:00:00Z"),
                    ("SYNCSEQ_INTERVAL_START", "2026-12-07T09:00:00Z"),
                    ("SYNCSEQ_INTERVAL_END", "2026-12-07T10:00:00Z"),
                ],
                true,
            ),
            (
                "manual",
                facts(TriggerKind::Manual, None, None),
                vec![("SYNCSEQ_TRIGGER", "Manual")],
                false,
            ),
            (
                "after a sequence",
                facts(TriggerKind::Upstream, None, Some(&from_seq)),
                vec![
                    ("SYNCSEQ_TRIGGER", "Upstream"),
                    ("SYNCSEQ_UPSTREAM", "SyncSequence/warehouse/12"),
                ],
                false,
            ),
            (
                "after a delivery, whose id the sender wrote",
                facts(TriggerKind::Upstream, None, Some(&from_dbt)),
                vec![
                    ("SYNCSEQ_TRIGGER", "Upstream"),
                    ("SYNCSEQ_UPSTREAM", "WebhookReceiver/dbt-cloud/70403[2J104"),
                ],
                false,
            ),
            (
                "a backfill run: its fire time's window, and the annotation",
                facts(TriggerKind::Backfill, Some(at), None),
                vec![
                    ("SYNCSEQ_TRIGGER", "Backfill"),
                    ("SYNCSEQ_SCHEDULED_TIME", "2026-12-07T10:00:00Z"),
                    ("SYNCSEQ_INTERVAL_START", "2026-12-07T09:00:00Z"),
                    ("SYNCSEQ_INTERVAL_END", "2026-12-07T10:00:00Z"),
                ],
                true,
            ),
            (
                "a retry of a scheduled run: its window, no fire time annotation",
                facts(TriggerKind::Retry, Some(at), None),
                vec![
                    ("SYNCSEQ_TRIGGER", "Retry"),
                    ("SYNCSEQ_SCHEDULED_TIME", "2026-12-07T10:00:00Z"),
                    ("SYNCSEQ_INTERVAL_START", "2026-12-07T09:00:00Z"),
                    ("SYNCSEQ_INTERVAL_END", "2026-12-07T10:00:00Z"),
                ],
                false,
            ),
            (
                "scheduled, the schedule now invalid: no start",
                RunFacts {
                    schedule: None,
                    ..facts(TriggerKind::Schedule, Some(at), None)
                },
                vec![
                    ("SYNCSEQ_TRIGGER", "Schedule"),
                    ("SYNCSEQ_SCHEDULED_TIME", "2026-12-07T10:00:00Z"),
                    ("SYNCSEQ_INTERVAL_END", "2026-12-07T10:00:00Z"),
                ],
                true,
            ),
        ];
        for (case, facts, rest, annotated) in cases {
            let job = build_job(
                &owner("SyncSequence", "crm"),
                &identity("accounts"),
                &sync_with_env(),
                None,
                &facts,
            );
            let mut context = vec![
                ("SYNCSEQ_RUN", "7"),
                ("SYNCSEQ_STEP", "accounts"),
                ("SYNCSEQ_ATTEMPT", "2"),
            ];
            context.extend(rest);
            let owned = |vars: &[(&str, &str)]| -> Vec<(String, String)> {
                vars.iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect()
            };
            let mut in_container: Vec<(&str, &str)> = context
                .iter()
                .copied()
                .filter(|(n, _)| *n != "SYNCSEQ_STEP")
                .collect();
            in_container.extend([("WAREHOUSE", "prod"), ("SYNCSEQ_STEP", "mine")]);
            assert_eq!(
                envs(&job),
                vec![
                    ("wait".to_string(), owned(&context)),
                    ("s".to_string(), owned(&in_container)),
                ],
                "{case}"
            );
            assert_eq!(
                scheduled_annotation(&job).is_some(),
                annotated,
                "{case}: the fire time annotation"
            );
        }
    }

    #[test]
    fn a_jittered_scheduled_runs_job_says_its_offset() {
        let at: Timestamp = "2026-12-07T10:00:00Z".parse().unwrap();
        let annotation = |trigger, jitter| {
            let job = build_job(
                &owner("SyncSequence", "crm"),
                &identity("accounts"),
                &fixtures::sync("accounts"),
                None,
                &RunFacts {
                    trigger,
                    scheduled: Some(at),
                    upstream: None,
                    schedule: None,
                    jitter,
                },
            );
            let annotations = job.metadata.annotations.unwrap_or_default();
            assert_eq!(
                annotations
                    .get(annotations::SCHEDULED_TIMESTAMP)
                    .map(String::as_str),
                Some("2026-12-07T10:00:00Z"),
                "the nominal fire time"
            );
            annotations.get(annotations::JITTER_OFFSET).cloned()
        };
        let offset = jiff::SignedDuration::from_millis(37_412);
        assert_eq!(
            annotation(TriggerKind::Schedule, offset).as_deref(),
            Some("37.412s")
        );
        assert_eq!(
            annotation(TriggerKind::Schedule, jiff::SignedDuration::ZERO),
            None
        );
        assert_eq!(
            annotation(TriggerKind::Backfill, offset),
            None,
            "no offset: its turn"
        );
    }

    #[test]
    fn a_syncs_own_run_names_the_sync_as_its_step() {
        let job = build_job(
            &owner("Sync", "accounts-nightly"),
            &identity("run"),
            &fixtures::sync("accounts-nightly"),
            None,
            &RunFacts {
                trigger: TriggerKind::Manual,
                scheduled: None,
                upstream: None,
                schedule: None,
                jitter: jiff::SignedDuration::ZERO,
            },
        );
        let env = &envs(&job)[0].1;
        assert!(
            env.contains(&("SYNCSEQ_STEP".into(), "accounts-nightly".into())),
            "{env:?}"
        );
        assert_eq!(job.metadata.labels.as_ref().unwrap()[labels::STEP], "run");
    }

    #[test]
    fn the_trigger_variable_spells_the_kind_as_status_does() {
        for kind in [
            TriggerKind::Schedule,
            TriggerKind::Manual,
            TriggerKind::Upstream,
            TriggerKind::Retry,
            TriggerKind::Backfill,
        ] {
            let facts = RunFacts {
                trigger: kind,
                scheduled: None,
                upstream: None,
                schedule: None,
                jitter: jiff::SignedDuration::ZERO,
            };
            let vars = run_context(&owner("SyncSequence", "crm"), &identity("a"), &facts);
            let trigger = vars.iter().find(|v| v.name == env::TRIGGER).unwrap();
            assert_eq!(
                serde_json::json!(trigger.value.as_deref().unwrap()),
                serde_json::to_value(kind).unwrap()
            );
        }
    }

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
