//! Acceptance tests of the issue "The API: Sync and SyncSequence resources the API server
//! validates", on the real local control plane (`make cluster`): the CRDs install, the examples
//! apply, every bad manifest is refused by `kubectl apply` with the offending field's path, and
//! `kubectl explain` / `kubectl get` show what the types document.

use crate::support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray,
};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use support::*;
use syncseq::api::{Sync, SyncSequence};

/// The CRD names the API server must serve.
const CRD_NAMES: [&str; 3] = [
    "syncs.syncseq.dev",
    "syncsequences.syncseq.dev",
    "webhookreceivers.syncseq.dev",
];

/// The API server's limit on the total size of an object's annotations; client-side
/// `kubectl apply` stores the whole object in one of them.
const ANNOTATIONS_LIMIT: usize = 262_144;

/// A valid SyncSequence using every field (the `examples/crm-hourly.yaml` sequence plus an
/// alert). Each bad manifest below is this one with exactly one thing wrong.
const VALID_SEQUENCE: &str = r#"
apiVersion: syncseq.dev/v1alpha1
kind: SyncSequence
metadata:
  name: crm-hourly
spec:
  schedule: "0 * * * *"
  timeZone: America/New_York
  startingDeadlineSeconds: 300
  concurrencyPolicy: Forbid
  suspend: false
  historyLimit: 10
  after:
    upstreams:
    - {kind: SyncSequence, name: warehouse-load}
    - {kind: Sync, name: dbt-models}
    when: SucceededWithErrors
    require: All
  steps:
  - name: accounts
    syncRef: {name: accounts}
    onFailure: Stop
  - name: workspaces
    syncRef: {name: workspaces}
    retries: 2
    retryDelaySeconds: 30
    timeoutSeconds: 3600
    rejectedRows: {max: 100, onExceeded: Stop}
  - name: contacts
    syncRef: {name: contacts}
    onFailure: Continue
    rejectedRows: {maxPercent: 5, onExceeded: Continue}
  alerts:
  - name: oncall
    when: [RunFailed, StepFailed, RejectedRows, Recovered]
    webhook:
      urlSecretRef: {name: slack-webhook, key: url}
      format: Slack
"#;

/// A valid WebhookReceiver.
const VALID_RECEIVER: &str = r#"
apiVersion: syncseq.dev/v1alpha1
kind: WebhookReceiver
metadata:
  name: valid-receiver
spec:
  type: DbtCloud
  dbtCloud:
    jobIds: ["4242"]
  secretRef: {name: dbt-cloud-webhook, key: token}
"#;

/// A valid Sync using every field.
const VALID_SYNC: &str = r#"
apiVersion: syncseq.dev/v1alpha1
kind: Sync
metadata:
  name: accounts
spec:
  schedule: "*/30 * * * *"
  timeZone: Europe/Berlin
  startingDeadlineSeconds: 60
  suspend: false
  jobTemplate:
    spec:
      backoffLimit: 0
      template:
        spec:
          restartPolicy: Never
          containers:
          - name: sync
            image: registry.example.com/warehouse-sync:1.4
            args: [--model, accounts, --object, Account]
"#;

fn parse(yaml: &str) -> Value {
    serde_saphyr::from_str(yaml).expect("valid YAML")
}

/// `kubectl apply` of one manifest, with strict server-side field validation (kubectl's default,
/// spelled out).
fn apply(namespace: &str, manifest: &str) -> std::process::Output {
    kubectl(
        &["apply", "--validate=strict", "-n", namespace, "-f", "-"],
        Some(manifest),
    )
}

/// Runs kubectl, asserts that it succeeded, returns its stdout.
fn kubectl_ok(args: &[&str]) -> String {
    let out = kubectl(args, None);
    assert!(
        out.status.success(),
        "kubectl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("kubectl prints UTF-8")
}

/// Collapses every run of whitespace into one space.
fn normalize(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

// ---------------------------------------------------------------------------------------------
// 1. The CRDs install and reach Established.

#[tokio::test]
async fn crds_install_and_are_established_with_structural_schemas() {
    install_crds().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client().await);
    let mut problems = Vec::new();
    for name in CRD_NAMES {
        let crd = crds
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("CRD {name} is not installed: {e}"));
        let conditions = crd
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let status_of = |t: &str| {
            conditions
                .iter()
                .find(|c| c.type_ == t)
                .map(|c| (c.status.clone(), c.message.clone().unwrap_or_default()))
        };
        for wanted in ["Established", "NamesAccepted"] {
            match status_of(wanted) {
                Some((s, _)) if s == "True" => {}
                other => problems.push(format!("{name}: condition {wanted} is {other:?}")),
            }
        }
        if let Some((s, message)) = status_of("NonStructuralSchema")
            && s == "True"
        {
            problems.push(format!("{name}: schema is not structural: {message}"));
        }
        let names = &crd.spec.names;
        if !names
            .categories
            .as_ref()
            .is_some_and(|c| c.iter().any(|c| c == "syncseq"))
        {
            problems.push(format!(
                "{name}: not in the syncseq category: {:?}",
                names.categories
            ));
        }
        for version in &crd.spec.versions {
            if version
                .subresources
                .as_ref()
                .is_none_or(|s| s.status.is_none())
            {
                problems.push(format!("{name}/{}: no status subresource", version.name));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "CRD problems:\n{}",
        problems.join("\n")
    );
}

/// The CRDs also install with client-side `kubectl apply -f`, which stores the whole object in
/// the `kubectl.kubernetes.io/last-applied-configuration` annotation. The apply is a server-side
/// dry run: a real client-side apply would leave `kubectl-client-side-apply` co-owning the
/// shared CRDs' fields, and fields it owns are not removed by later server-side applies.
#[tokio::test]
async fn crds_install_with_client_side_kubectl_apply() {
    install_crds().await;
    let path = repo_root().join("crds/syncseq.dev_crds.yaml");
    let yaml = std::fs::read_to_string(&path).unwrap();
    let mut too_big = Vec::new();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&yaml).expect("CRDs are YAML");
    for value in docs {
        let size = serde_json::to_vec(&value).unwrap().len();
        if size >= ANNOTATIONS_LIMIT {
            too_big.push(format!(
                "{}: {size} bytes as JSON",
                value["metadata"]["name"]
            ));
        }
    }
    assert!(
        too_big.is_empty(),
        "too big for the last-applied annotation ({ANNOTATIONS_LIMIT} bytes): {too_big:?}"
    );
    let out = kubectl(
        &["apply", "--dry-run=server", "-f", path.to_str().unwrap()],
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client-side kubectl apply of the CRDs was refused:\n{}{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    for name in CRD_NAMES {
        assert!(
            stdout.contains(&format!(
                "customresourcedefinition.apiextensions.k8s.io/{name}"
            )),
            "kubectl apply did not report {name}:\n{stdout}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Every example applies cleanly.

fn example_files() -> Vec<PathBuf> {
    let dir = repo_root().join("examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn every_example_applies_cleanly() {
    install_crds().await;
    let files = example_files();
    assert!(!files.is_empty(), "no examples/*.yaml found");
    let mut problems = Vec::new();
    for file in &files {
        let shown = file.strip_prefix(repo_root()).unwrap_or(file).display();
        let text = std::fs::read_to_string(file).unwrap();
        let mut objects = Vec::new();
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{shown}: {e}"));
        for value in docs {
            if !value["metadata"]["namespace"].is_null() {
                problems.push(format!(
                    "{shown}: {} {} sets a namespace; examples must apply into any namespace",
                    value["kind"], value["metadata"]["name"]
                ));
            }
            objects.push(format!(
                "{}/{}",
                value["kind"].as_str().unwrap_or_default(),
                value["metadata"]["name"].as_str().unwrap_or_default()
            ));
        }
        if objects.is_empty() {
            problems.push(format!("{shown}: no objects"));
            continue;
        }
        // A namespace per example: two examples may well both define a Sync `accounts`.
        let ns = TestNamespace::new("example").await;
        let out = kubectl(
            &[
                "apply",
                "--validate=strict",
                "-n",
                &ns.name,
                "-f",
                file.to_str().unwrap(),
            ],
            None,
        );
        if !out.status.success() {
            problems.push(format!(
                "{shown}: kubectl apply failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
            continue;
        }
        let listed = kubectl_ok(&[
            "get",
            "-n",
            &ns.name,
            "-f",
            file.to_str().unwrap(),
            "-o",
            "jsonpath={range .items[*]}{.kind}/{.metadata.name}{\"\\n\"}{end}",
        ]);
        let listed: BTreeSet<&str> = listed.lines().collect();
        for object in &objects {
            if !listed.contains(object.as_str()) {
                problems.push(format!(
                    "{shown}: {object} was not created (got {listed:?})"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "examples that do not apply cleanly:\n{}",
        problems.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Bad manifests are refused, naming the offending field.

/// One bad manifest: the valid one with one thing wrong.
struct BadCase {
    what: &'static str,
    manifest: Value,
    /// The field path the rejection must name, as the API server prints it: `<path>: ...`, or
    /// quoted for a strict-decoding error.
    path: &'static str,
    /// Further fragments the message must contain.
    also: &'static [&'static str],
    /// Turns the rendered YAML into what the user typed, for mistakes JSON cannot express.
    edit_yaml: Option<fn(String) -> String>,
}

fn sequence_with(mutate: impl FnOnce(&mut Value)) -> Value {
    let mut v = parse(VALID_SEQUENCE);
    mutate(&mut v["spec"]);
    v
}

fn sync_with(mutate: impl FnOnce(&mut Value)) -> Value {
    let mut v = parse(VALID_SYNC);
    mutate(&mut v["spec"]);
    v
}

fn receiver_with(mutate: impl FnOnce(&mut Value)) -> Value {
    let mut v = parse(VALID_RECEIVER);
    mutate(&mut v["spec"]);
    v
}

fn bad(
    what: &'static str,
    manifest: Value,
    path: &'static str,
    also: &'static [&'static str],
) -> BadCase {
    BadCase {
        what,
        manifest,
        path,
        also,
        edit_yaml: None,
    }
}

fn remove(v: &mut Value, key: &str) {
    v.as_object_mut().unwrap().remove(key);
}

fn bad_cases() -> Vec<BadCase> {
    let mut cases = vec![
        // Steps: count, uniqueness, names, references.
        bad(
            "zero steps",
            sequence_with(|s| s["steps"] = json!([])),
            "spec.steps",
            &["at least 1 items"],
        ),
        bad(
            "33 steps (more than 32)",
            sequence_with(|s| {
                s["steps"] = (0..33)
                    .map(|i| json!({"name": format!("step-{i}"), "syncRef": {"name": "accounts"}}))
                    .collect();
            }),
            "spec.steps",
            &["at most 32"],
        ),
        bad(
            "duplicate step names",
            sequence_with(|s| s["steps"][1]["name"] = json!("accounts")),
            // A list keyed by name: the server names the duplicate element and its key.
            "spec.steps[1]",
            &["Duplicate value", r#""name":"accounts""#],
        ),
        // Steps as a graph: dependsOn may name only steps listed before (no unknown name, no
        // forward reference, no cycle), and the message names the step.
        bad(
            "dependsOn a name that is no step",
            sequence_with(|s| s["steps"][2]["dependsOn"] = json!(["accounts", "deals"])),
            "spec.steps",
            &["step contacts dependsOn a name that is no step of this sequence"],
        ),
        bad(
            "dependsOn a step listed later",
            sequence_with(|s| s["steps"][0]["dependsOn"] = json!(["contacts"])),
            "spec.steps",
            &["step accounts dependsOn a step that is not listed before it"],
        ),
        bad(
            "a step that depends on itself",
            sequence_with(|s| s["steps"][1]["dependsOn"] = json!(["workspaces"])),
            "spec.steps",
            &["step workspaces dependsOn a step that is not listed before it"],
        ),
        bad(
            "the last of 32 steps depends on a later name",
            sequence_with(|s| {
                s["steps"] = (0..32)
                    .map(|i| json!({"name": format!("step-{i}"), "syncRef": {"name": "accounts"}}))
                    .collect();
                s["steps"][31]["dependsOn"] = json!(["step-0", "step-32"]);
            }),
            "spec.steps",
            &["step step-31 dependsOn a name that is no step of this sequence"],
        ),
        bad(
            "an unknown runWhen",
            sequence_with(|s| s["steps"][1]["runWhen"] = json!("AnySucceeded")),
            "spec.steps[1].runWhen",
            &["Unsupported value", "\"AllFinished\""],
        ),
        bad(
            "maxParallel 0",
            sequence_with(|s| s["maxParallel"] = json!(0)),
            "spec.maxParallel",
            &[],
        ),
        bad(
            "step name with uppercase letters",
            sequence_with(|s| s["steps"][1]["name"] = json!("Workspaces")),
            "spec.steps[1].name",
            &[],
        ),
        bad(
            "step name longer than 63 characters",
            sequence_with(|s| s["steps"][1]["name"] = json!("w".repeat(64))),
            "spec.steps[1].name",
            &["Too long"],
        ),
        bad(
            "step name with a leading dash",
            sequence_with(|s| s["steps"][1]["name"] = json!("-workspaces")),
            "spec.steps[1].name",
            &[],
        ),
        bad(
            "step name with an underscore",
            sequence_with(|s| s["steps"][2]["name"] = json!("crm_contacts")),
            "spec.steps[2].name",
            &[],
        ),
        bad(
            "syncRef.name not a DNS name",
            sequence_with(|s| s["steps"][0]["syncRef"]["name"] = json!("Accounts_v2")),
            "spec.steps[0].syncRef.name",
            &[],
        ),
        bad(
            "step without syncRef",
            sequence_with(|s| remove(&mut s["steps"][0], "syncRef")),
            "spec.steps[0].syncRef",
            &["Required value"],
        ),
        // Enums.
        bad(
            "concurrencyPolicy Allow",
            sequence_with(|s| s["concurrencyPolicy"] = json!("Allow")),
            "spec.concurrencyPolicy",
            &["Unsupported value", "Forbid", "Replace", "Queue"],
        ),
        bad(
            "onFailure Retry",
            sequence_with(|s| s["steps"][0]["onFailure"] = json!("Retry")),
            "spec.steps[0].onFailure",
            &["Unsupported value"],
        ),
        bad(
            "rejectedRows.onExceeded Ignore",
            sequence_with(|s| s["steps"][1]["rejectedRows"]["onExceeded"] = json!("Ignore")),
            "spec.steps[1].rejectedRows.onExceeded",
            &["Unsupported value"],
        ),
        bad(
            "alert trigger Exploded",
            sequence_with(|s| s["alerts"][0]["when"] = json!(["RunFailed", "Exploded"])),
            "spec.alerts[0].when[1]",
            &["Unsupported value"],
        ),
        bad(
            "webhook format XML",
            sequence_with(|s| s["alerts"][0]["webhook"]["format"] = json!("XML")),
            "spec.alerts[0].webhook.format",
            &["Unsupported value"],
        ),
        // Ranges.
        bad(
            "negative startingDeadlineSeconds",
            sequence_with(|s| s["startingDeadlineSeconds"] = json!(-1)),
            "spec.startingDeadlineSeconds",
            &[],
        ),
        bad(
            "negative retries",
            sequence_with(|s| s["steps"][1]["retries"] = json!(-1)),
            "spec.steps[1].retries",
            &[],
        ),
        bad(
            "retries above 10",
            sequence_with(|s| s["steps"][1]["retries"] = json!(11)),
            "spec.steps[1].retries",
            &[],
        ),
        bad(
            "negative retryDelaySeconds",
            sequence_with(|s| s["steps"][1]["retryDelaySeconds"] = json!(-30)),
            "spec.steps[1].retryDelaySeconds",
            &[],
        ),
        bad(
            "negative timeoutSeconds",
            sequence_with(|s| s["steps"][1]["timeoutSeconds"] = json!(-5)),
            "spec.steps[1].timeoutSeconds",
            &[],
        ),
        bad(
            "timeoutSeconds 0",
            sequence_with(|s| s["steps"][1]["timeoutSeconds"] = json!(0)),
            "spec.steps[1].timeoutSeconds",
            &[],
        ),
        bad(
            "historyLimit 0",
            sequence_with(|s| s["historyLimit"] = json!(0)),
            "spec.historyLimit",
            &[],
        ),
        bad(
            "historyLimit above 100",
            sequence_with(|s| s["historyLimit"] = json!(101)),
            "spec.historyLimit",
            &[],
        ),
        // Rejected rows.
        bad(
            "rejectedRows with both max and maxPercent",
            sequence_with(|s| s["steps"][1]["rejectedRows"]["maxPercent"] = json!(5)),
            "spec.steps[1].rejectedRows",
            &["set exactly one of max or maxPercent"],
        ),
        bad(
            "rejectedRows with neither max nor maxPercent",
            sequence_with(|s| s["steps"][1]["rejectedRows"] = json!({"onExceeded": "Stop"})),
            "spec.steps[1].rejectedRows",
            &["set exactly one of max or maxPercent"],
        ),
        bad(
            "rejectedRows.maxPercent above 100",
            sequence_with(|s| s["steps"][2]["rejectedRows"]["maxPercent"] = json!(101)),
            "spec.steps[2].rejectedRows.maxPercent",
            &[],
        ),
        bad(
            "negative rejectedRows.max",
            sequence_with(|s| s["steps"][1]["rejectedRows"]["max"] = json!(-1)),
            "spec.steps[1].rejectedRows.max",
            &[],
        ),
        // Schedule and time zone.
        bad(
            "schedule with a TZ= prefix",
            sequence_with(|s| s["schedule"] = json!("TZ=UTC 0 * * *")),
            "spec.schedule",
            &["timeZone"],
        ),
        bad(
            "schedule with a CRON_TZ= prefix",
            sequence_with(|s| s["schedule"] = json!("CRON_TZ=America/New_York 0 * * * *")),
            "spec.schedule",
            &["timeZone"],
        ),
        bad(
            "6-field schedule (with seconds)",
            sequence_with(|s| s["schedule"] = json!("0 0 * * * *")),
            "spec.schedule",
            &["5-field"],
        ),
        bad(
            "3-field schedule",
            sequence_with(|s| s["schedule"] = json!("0 * *")),
            "spec.schedule",
            &["5-field"],
        ),
        bad(
            "empty schedule",
            sequence_with(|s| s["schedule"] = json!("")),
            "spec.schedule",
            &[],
        ),
        bad(
            "timeZone with spaces",
            sequence_with(|s| s["timeZone"] = json!("Not A Zone")),
            "spec.timeZone",
            &[],
        ),
        bad(
            "timeZone that is a relative path",
            sequence_with(|s| s["timeZone"] = json!("../etc")),
            "spec.timeZone",
            &[],
        ),
        // Alerts.
        bad(
            "duplicate alert names",
            sequence_with(|s| {
                let again = s["alerts"][0].clone();
                s["alerts"].as_array_mut().unwrap().push(again);
            }),
            "spec.alerts[1]",
            &["Duplicate value", r#""name":"oncall""#],
        ),
        bad(
            "alert with no triggers",
            sequence_with(|s| s["alerts"][0]["when"] = json!([])),
            "spec.alerts[0].when",
            &[],
        ),
        BadCase {
            // The design proposal's `on:` key: YAML 1.1 (kubectl's parser) reads it as `true`.
            what: "alert written with `on:` instead of `when:`",
            manifest: parse(VALID_SEQUENCE),
            path: "spec.alerts[0].true",
            also: &["unknown field"],
            edit_yaml: Some(|yaml| {
                // The alert's `when:` (a list), not `after.when:`.
                let edited = yaml.replacen("\n    when:\n", "\n    on:\n", 1);
                assert_ne!(edited, yaml, "the rendered sequence has no `when:` key");
                edited
            }),
        },
        // Upstreams.
        bad(
            "after without upstreams",
            sequence_with(|s| s["after"]["upstreams"] = json!([])),
            "spec.after.upstreams",
            &["at least 1 items"],
        ),
        bad(
            "after naming an upstream of an unknown kind",
            sequence_with(|s| s["after"]["upstreams"][0]["kind"] = json!("CronJob")),
            "spec.after.upstreams[0].kind",
            &["Unsupported value", "SyncSequence"],
        ),
        bad(
            "after naming the same upstream twice",
            sequence_with(|s| s["after"]["upstreams"][1] = s["after"]["upstreams"][0].clone()),
            "spec.after.upstreams[1]",
            &["Duplicate value"],
        ),
        bad(
            "after with an unknown outcome",
            sequence_with(|s| s["after"]["when"] = json!("Succeded")),
            "spec.after.when",
            &["Unsupported value"],
        ),
        bad(
            "Sync after an upstream with an invalid name",
            sync_with(|s| {
                s["after"] = json!({"upstreams": [{"kind": "Sync", "name": "Dbt Models"}]})
            }),
            "spec.after.upstreams[0].name",
            &[],
        ),
        // Sync.
        bad(
            "Sync schedule with a CRON_TZ= prefix",
            sync_with(|s| s["schedule"] = json!("CRON_TZ=UTC 0 * * * *")),
            "spec.schedule",
            &["timeZone"],
        ),
        bad(
            "Sync 6-field schedule",
            sync_with(|s| s["schedule"] = json!("0 */30 * * * *")),
            "spec.schedule",
            &["5-field"],
        ),
        bad(
            "Sync without jobTemplate",
            sync_with(|s| remove(s, "jobTemplate")),
            "spec.jobTemplate",
            &["Required value"],
        ),
        bad(
            "Sync jobTemplate without a Pod template",
            sync_with(|s| remove(&mut s["jobTemplate"]["spec"], "template")),
            "spec.jobTemplate.spec.template",
            &["Required value"],
        ),
        bad(
            "Sync timeZone with spaces",
            sync_with(|s| s["timeZone"] = json!("Not A Zone")),
            "spec.timeZone",
            &[],
        ),
        bad(
            "Sync negative startingDeadlineSeconds",
            sync_with(|s| s["startingDeadlineSeconds"] = json!(-10)),
            "spec.startingDeadlineSeconds",
            &[],
        ),
        // Webhook receivers.
        bad(
            "DbtCloud receiver without its jobs",
            receiver_with(|s| remove(s, "dbtCloud")),
            "spec",
            &["type DbtCloud needs dbtCloud.jobIds"],
        ),
        bad(
            "Fivetran receiver without its connectors",
            receiver_with(|s| s["type"] = json!("Fivetran")),
            "spec",
            &["type Fivetran needs fivetran.connectorIds"],
        ),
        bad(
            "an unknown receiver type",
            receiver_with(|s| s["type"] = json!("Airflow")),
            "spec.type",
            &["Unsupported value", "\"Generic\""],
        ),
        bad(
            "a receiver without a Secret",
            receiver_with(|s| remove(s, "secretRef")),
            "spec.secretRef",
            &["Required value"],
        ),
        bad(
            "an empty list of dbt Cloud jobs",
            receiver_with(|s| s["dbtCloud"]["jobIds"] = json!([])),
            "spec.dbtCloud.jobIds",
            &[],
        ),
        bad(
            "after an unknown kind of upstream",
            sequence_with(|s| {
                s["after"] = json!({"upstreams": [{"kind": "Receiver", "name": "x"}]})
            }),
            "spec.after.upstreams[0].kind",
            &["\"WebhookReceiver\""],
        ),
    ];
    for (i, case) in cases.iter_mut().enumerate() {
        case.manifest["metadata"]["name"] = json!(format!("bad-{i:02}"));
    }
    cases
}

#[tokio::test]
async fn bad_manifests_are_rejected_naming_the_offending_field() {
    install_crds().await;
    let ns = TestNamespace::new("crd-bad").await;

    // The control: the manifests the bad cases are derived from are accepted.
    for valid in [VALID_SEQUENCE, VALID_SYNC, VALID_RECEIVER] {
        let out = apply(&ns.name, valid);
        assert!(
            out.status.success(),
            "the valid manifest the bad cases derive from was refused: {}\n{valid}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let cases = bad_cases();
    let mut failures = Vec::new();
    for case in &cases {
        let mut yaml = serde_saphyr::to_string(&case.manifest).unwrap();
        if let Some(edit) = case.edit_yaml {
            yaml = edit(yaml);
        }
        let out = apply(&ns.name, &yaml);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let message = stderr.trim();
        eprintln!("{}: {message}", case.what);
        if out.status.success() {
            failures.push(format!(
                "{}: accepted, expected a rejection naming {}",
                case.what, case.path
            ));
            continue;
        }
        if !(message.contains("is invalid") || message.contains("Error from server")) {
            failures.push(format!(
                "{}: not refused by the API server: {message}",
                case.what
            ));
            continue;
        }
        // The path as a whole: `<path>: <error>`, or quoted as in `unknown field "<path>"`.
        let names_path = message.match_indices(case.path).any(|(i, _)| {
            let after = &message[i + case.path.len()..];
            after.starts_with(": ") || (after.starts_with('"') && message[..i].ends_with('"'))
        });
        let mut missing: Vec<&str> = case
            .also
            .iter()
            .copied()
            .filter(|f| !message.contains(f))
            .collect();
        if !names_path {
            missing.insert(0, case.path);
        }
        if !missing.is_empty() {
            failures.push(format!(
                "{}: the rejection lacks {missing:?}: {message}",
                case.what
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad manifests were not rejected as expected:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// The rules are not stricter than the contract: valid variants of the fields the rules check
/// are accepted.
#[tokio::test]
async fn valid_variants_are_accepted() {
    install_crds().await;
    let ns = TestNamespace::new("crd-ok").await;
    let mut variants: Vec<(String, Value)> = Vec::new();
    for schedule in [
        "@hourly",
        "@daily",
        "@every 90m",
        "@every 1h30m",
        "0 9 * * MON-FRI",
        "*/15 * ? * *",
        "0 0 1 JAN,JUL *",
        "30 2 * * 0",
    ] {
        variants.push((
            format!("schedule {schedule:?}"),
            sequence_with(|s| s["schedule"] = json!(schedule)),
        ));
        variants.push((
            format!("Sync schedule {schedule:?}"),
            sync_with(|s| s["schedule"] = json!(schedule)),
        ));
    }
    for zone in [
        "UTC",
        "America/Argentina/Buenos_Aires",
        "America/Port-au-Prince",
        "Etc/GMT+5",
        "Etc/GMT-14",
    ] {
        variants.push((
            format!("timeZone {zone:?}"),
            sequence_with(|s| s["timeZone"] = json!(zone)),
        ));
    }
    variants.push((
        "manual-only sequence with one minimal step".into(),
        json!({
            "apiVersion": "syncseq.dev/v1alpha1",
            "kind": "SyncSequence",
            "spec": {"steps": [{"name": "a", "syncRef": {"name": "a"}}]}
        }),
    ));
    variants.push((
        "32 steps".into(),
        sequence_with(|s| {
            s["steps"] = (0..32)
                .map(|i| json!({"name": format!("step-{i}"), "syncRef": {"name": "accounts"}}))
                .collect();
        }),
    ));
    variants.push((
        "limits at their bounds".into(),
        sequence_with(|s| {
            s["historyLimit"] = json!(100);
            s["startingDeadlineSeconds"] = json!(0);
            s["steps"][1]["retries"] = json!(10);
            s["steps"][1]["timeoutSeconds"] = json!(1);
            s["steps"][1]["rejectedRows"] = json!({"max": 0});
            s["steps"][2]["rejectedRows"] = json!({"maxPercent": 100});
            s["steps"][0]["name"] = json!("a".repeat(63));
        }),
    ));
    variants.push((
        "the graph of design.md: a diamond, a second root, runWhen, maxParallel, failFast".into(),
        sequence_with(|s| {
            s["maxParallel"] = json!(3);
            s["failFast"] = json!(true);
            s["steps"] = json!([
                {"name": "accounts", "syncRef": {"name": "accounts"}},
                {"name": "workspaces", "syncRef": {"name": "workspaces"}, "dependsOn": ["accounts"]},
                {"name": "deals", "syncRef": {"name": "deals"}, "dependsOn": ["accounts"]},
                {"name": "contacts", "syncRef": {"name": "contacts"},
                 "dependsOn": ["workspaces", "deals"]},
                {"name": "audit", "syncRef": {"name": "audit"}, "dependsOn": []},
                {"name": "summary", "syncRef": {"name": "summary"}, "dependsOn": ["contacts"],
                 "runWhen": "AllFinished"},
                {"name": "undo-deals", "syncRef": {"name": "deals"}, "dependsOn": ["deals"],
                 "runWhen": "AnyFailed"},
            ]);
        }),
    ));
    variants.push((
        "32 steps, the last depending on all 31 before it".into(),
        sequence_with(|s| {
            s["maxParallel"] = json!(32);
            s["steps"] = (0..32)
                .map(|i| json!({"name": format!("step-{i}"), "syncRef": {"name": "accounts"}}))
                .collect();
            s["steps"][31]["dependsOn"] = (0..31).map(|i| format!("step-{i}")).collect();
        }),
    ));
    variants.push((
        "Sync with only a jobTemplate".into(),
        sync_with(|s| {
            let jt = s["jobTemplate"].take();
            *s = json!({"jobTemplate": jt});
        }),
    ));

    let mut refused = Vec::new();
    for (i, (what, mut manifest)) in variants.into_iter().enumerate() {
        manifest["metadata"] = json!({"name": format!("ok-{i:02}")});
        let out = apply(&ns.name, &serde_saphyr::to_string(&manifest).unwrap());
        if !out.status.success() {
            refused.push(format!(
                "{what}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    assert!(
        refused.is_empty(),
        "valid manifests were refused:\n{}",
        refused.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// 4. kubectl explain shows the documented fields.

/// The schema of `SyncSequence.spec.steps[]` as generated from the types.
fn generated_step_schema() -> JSONSchemaProps {
    let crd = syncseq::api::all_crds()
        .into_iter()
        .find(|c| c.spec.names.kind == "SyncSequence")
        .expect("a SyncSequence CRD");
    let root = crd.spec.versions[0]
        .schema
        .clone()
        .and_then(|s| s.open_api_v3_schema)
        .expect("a schema");
    let steps = root.properties.unwrap()["spec"].properties.clone().unwrap()["steps"].clone();
    match steps.items {
        Some(JSONSchemaPropsOrArray::Schema(items)) => *items,
        other => panic!("steps has no item schema: {other:?}"),
    }
}

#[tokio::test]
async fn kubectl_explain_shows_the_documented_step_fields() {
    install_crds().await;
    let fields = [
        "name",
        "syncRef",
        "onFailure",
        "rejectedRows",
        "retries",
        "retryDelaySeconds",
        "timeoutSeconds",
    ];
    let schema = generated_step_schema();
    let properties = schema.properties.unwrap_or_default();

    // kubectl discovers the CRD's OpenAPI asynchronously after it is (re)installed.
    let output = eventually(
        Duration::from_secs(30),
        "kubectl explain syncsequence.spec.steps to list the step fields",
        || async {
            let out = kubectl(&["explain", "syncsequence.spec.steps"], None);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            (out.status.success() && text.contains("FIELDS:")).then_some(text)
        },
    )
    .await;

    // Each field's block: its `  <name>\t<type>` line and the indented lines up to a blank one.
    let mut missing = Vec::new();
    for field in fields {
        let description = properties
            .get(field)
            .and_then(|p| p.description.clone())
            .unwrap_or_default();
        if description.trim().is_empty() {
            missing.push(format!("{field}: no description in the generated schema"));
            continue;
        }
        let header = format!("  {field}\t<");
        let Some(start) = output.find(&header) else {
            missing.push(format!("{field}: not listed"));
            continue;
        };
        let block: String = output[start..]
            .lines()
            .take_while(|l| !l.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        if !normalize(&block).contains(&normalize(&description)) {
            missing.push(format!(
                "{field}: description {description:?} not shown; block was:\n{block}"
            ));
        }
    }
    assert!(
        missing.is_empty(),
        "kubectl explain syncsequence.spec.steps lacks:\n{}\n--- output:\n{output}",
        missing.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// 5. kubectl get: printer columns, the syncseq category, the short name.

/// One table of `kubectl get` output: cells are cut at the header's column offsets (headers
/// and values may contain single spaces, e.g. `LAST RESULT` or `0 * * * *`).
#[derive(Debug)]
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn row(&self, name: &str) -> Option<&Vec<String>> {
        self.rows.iter().find(|r| r[0] == name)
    }

    fn cell<'a>(&self, row: &'a [String], column: &str) -> &'a str {
        let i = self
            .header
            .iter()
            .position(|h| h == column)
            .unwrap_or_else(|| panic!("no column {column} in {:?}", self.header));
        &row[i]
    }
}

/// Parses `kubectl get` output: one table per resource type, separated by blank lines.
fn parse_tables(output: &str) -> Vec<Table> {
    let mut tables = Vec::new();
    for block in output.split("\n\n") {
        let mut lines = block.lines().filter(|l| !l.trim().is_empty());
        let Some(header_line) = lines.next() else {
            continue;
        };
        // Column starts: where a header begins after two or more spaces.
        let bytes = header_line.as_bytes();
        let mut starts = vec![0];
        for i in 2..bytes.len() {
            if bytes[i] != b' ' && bytes[i - 1] == b' ' && bytes[i - 2] == b' ' {
                starts.push(i);
            }
        }
        let cut = |line: &str| -> Vec<String> {
            starts
                .iter()
                .enumerate()
                .map(|(k, &from)| {
                    let to = starts.get(k + 1).copied().unwrap_or(line.len());
                    line.get(from.min(line.len())..to.min(line.len()))
                        .unwrap_or_default()
                        .trim()
                        .to_string()
                })
                .collect()
        };
        let header = cut(header_line);
        let rows = lines.map(cut).collect();
        tables.push(Table { header, rows });
    }
    tables
}

/// A kubectl age: digits and units, e.g. `5s`, `2m10s`.
fn looks_like_age(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_digit() || "smhdy".contains(c))
}

fn rfc3339(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[tokio::test]
async fn kubectl_get_shows_printer_columns_category_and_short_name() {
    install_crds().await;
    let ns = TestNamespace::new("crd-get").await;
    ns.kubectl_apply(
        r#"
apiVersion: syncseq.dev/v1alpha1
kind: SyncSequence
metadata:
  name: crm-hourly
spec:
  schedule: "0 * * * *"
  suspend: true
  steps:
  - {name: accounts, syncRef: {name: accounts}}
  - {name: workspaces, syncRef: {name: workspaces}}
  - {name: contacts, syncRef: {name: contacts}}
---
apiVersion: syncseq.dev/v1alpha1
kind: Sync
metadata:
  name: accounts
spec:
  schedule: "*/30 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
          - {name: sync, image: registry.example.com/warehouse-sync:1.4}
"#,
    );

    // Status through the status subresource, with a field manager of our own.
    let now = jiff::Timestamp::now();
    let started = rfc3339(now - jiff::SignedDuration::from_mins(3));
    let last_schedule = rfc3339(now - jiff::SignedDuration::from_hours(30));
    let params = PatchParams::apply("crd-validation-test").force();
    ns.api::<SyncSequence>()
        .patch_status(
            "crm-hourly",
            &params,
            &Patch::Apply(json!({
                "apiVersion": "syncseq.dev/v1alpha1",
                "kind": "SyncSequence",
                "status": {
                    "lastRunResult": "Succeeded",
                    "lastScheduleTime": last_schedule,
                    "currentRun": {
                        "id": 7,
                        "trigger": "Manual",
                        "startTime": started,
                        "phase": "Running",
                        "progress": "2/3",
                        "steps": [
                            {"name": "accounts", "sync": "accounts", "phase": "Succeeded", "attempts": 1},
                            {"name": "workspaces", "sync": "workspaces", "phase": "Running", "attempts": 1},
                            {"name": "contacts", "sync": "contacts", "phase": "Pending"}
                        ]
                    }
                }
            })),
        )
        .await
        .expect("status of the SyncSequence is accepted");
    ns.api::<Sync>()
        .patch_status(
            "accounts",
            &params,
            &Patch::Apply(json!({
                "apiVersion": "syncseq.dev/v1alpha1",
                "kind": "Sync",
                "status": {
                    "lastRun": {
                        "jobName": "accounts-42",
                        "trigger": "Schedule",
                        "startTime": started,
                        "outcome": "Succeeded",
                        "rowsSynced": 1200,
                        "rowsRejected": 3
                    }
                }
            })),
        )
        .await
        .expect("status of the Sync is accepted");

    let sequence_header = [
        "NAME",
        "SCHEDULE",
        "SUSPEND",
        "STEP",
        "LAST RESULT",
        "LAST SCHEDULE",
        "AGE",
    ];
    let sequence_values = [
        ("SCHEDULE", "0 * * * *"),
        ("SUSPEND", "true"),
        ("STEP", "2/3"),
        ("LAST RESULT", "Succeeded"),
        ("LAST SCHEDULE", "30h"),
    ];
    let sync_header = ["NAME", "SCHEDULE", "LAST RESULT", "ROWS", "AGE"];
    let sync_values = [
        ("SCHEDULE", "*/30 * * * *"),
        ("LAST RESULT", "Succeeded"),
        ("ROWS", "1200"),
    ];
    let check_row = |problems: &mut Vec<String>,
                     table: &Table,
                     name: &str,
                     header: &[&str],
                     values: &[(&str, &str)]| {
        if table.header != header {
            problems.push(format!(
                "header of {name}'s table is {:?}, expected {header:?}",
                table.header
            ));
            return;
        }
        let Some(row) = table.row(name) else {
            problems.push(format!("no row {name} in {:?}", table.rows));
            return;
        };
        for (column, expected) in values {
            let got = table.cell(row, column);
            if got != *expected {
                problems.push(format!(
                    "{name}: {column} is {got:?}, expected {expected:?}"
                ));
            }
        }
        let age = table.cell(row, "AGE");
        if !looks_like_age(age) {
            problems.push(format!(
                "{name}: AGE is {age:?}, expected an age such as 5s"
            ));
        }
    };

    // The category lists both kinds, one table each.
    let output = kubectl_ok(&["get", "syncseq", "-n", &ns.name]);
    let tables = parse_tables(&output);
    let mut problems = Vec::new();
    let find = |name: &str| tables.iter().find(|t| t.row(name).is_some());
    match find("syncsequence.syncseq.dev/crm-hourly") {
        Some(t) => check_row(
            &mut problems,
            t,
            "syncsequence.syncseq.dev/crm-hourly",
            &sequence_header,
            &sequence_values,
        ),
        None => problems.push("no syncsequence.syncseq.dev/crm-hourly row".into()),
    }
    match find("sync.syncseq.dev/accounts") {
        Some(t) => check_row(
            &mut problems,
            t,
            "sync.syncseq.dev/accounts",
            &sync_header,
            &sync_values,
        ),
        None => problems.push("no sync.syncseq.dev/accounts row".into()),
    }
    assert!(
        problems.is_empty(),
        "kubectl get syncseq -n {}:\n{}\n--- output:\n{output}",
        ns.name,
        problems.join("\n")
    );

    // The short name and the full names show the same columns.
    for (resource, name, header, values) in [
        (
            "sseq",
            "crm-hourly",
            &sequence_header[..],
            &sequence_values[..],
        ),
        (
            "syncsequences",
            "crm-hourly",
            &sequence_header[..],
            &sequence_values[..],
        ),
        (
            "syncs.syncseq.dev",
            "accounts",
            &sync_header[..],
            &sync_values[..],
        ),
    ] {
        let output = kubectl_ok(&["get", resource, "-n", &ns.name]);
        let tables = parse_tables(&output);
        let mut problems = Vec::new();
        match tables.as_slice() {
            [table] => check_row(&mut problems, table, name, header, values),
            _ => problems.push(format!("expected one table, got {}", tables.len())),
        }
        assert!(
            problems.is_empty(),
            "kubectl get {resource} -n {}:\n{}\n--- output:\n{output}",
            ns.name,
            problems.join("\n")
        );
    }
}
