//! The kubectl plugin, run as users run it: the cargo-built binary as `syncseq plugin ...`, the
//! same binary through a `kubectl-syncseq` symlink (argv[0] dispatch), and through kubectl's
//! own plugin discovery (`kubectl syncseq ...` with the symlink on PATH).

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::fixtures::*;
use support::*;
use syncseq::api::{RunPhase, RunSummary, StepPhase, SyncSequence};

const RUN_DEADLINE: Duration = Duration::from_secs(90);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// `syncseq plugin ARGS -n NS --kubeconfig ...`, with $KUBECONFIG unset so only the flag counts.
fn plugin_command(ns: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_syncseq"));
    cmd.arg("plugin")
        .args(args)
        .args(["-n", ns, "--kubeconfig"])
        .arg(kubeconfig_path())
        .env_remove("KUBECONFIG");
    cmd
}

fn plugin(ns: &str, args: &[&str]) -> Output {
    plugin_command(ns, args).output().unwrap()
}

/// A scratch directory for one test, removed when dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(ns: &TestNamespace) -> Self {
        let dir = std::env::temp_dir().join(format!("syncseq-plugin-{}", ns.name));
        std::fs::create_dir_all(&dir).unwrap();
        ScratchDir(dir)
    }

    /// `kubectl-syncseq`, a symlink to the cargo-built binary.
    fn plugin_symlink(&self) -> PathBuf {
        let link = self.0.join("kubectl-syncseq");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_syncseq"), &link).unwrap();
        link
    }

    /// A copy of the test kubeconfig whose current context defaults to `namespace`.
    fn kubeconfig_defaulting_to(&self, namespace: &str) -> PathBuf {
        let path = self.0.join("kubeconfig");
        std::fs::copy(kubeconfig_path(), &path).unwrap();
        let out = Command::new("kubectl")
            .args([
                "config",
                "set-context",
                "--current",
                "--namespace",
                namespace,
            ])
            .arg("--kubeconfig")
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", describe(&out));
        path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn crm(ns: &TestNamespace) {
    ns.kubectl_apply(&sync_yaml(
        "accounts",
        "1s",
        0,
        Some(r#"{"rowsSynced":1200,"rowsRejected":0}"#),
    ));
    ns.kubectl_apply(&sync_yaml(
        "workspaces",
        "1s",
        0,
        Some(r#"{"rowsSynced":340,"rowsRejected":2,"message":"2 owners missing"}"#),
    ));
    ns.kubectl_apply(&sync_yaml(
        "contacts",
        "1s",
        0,
        Some(r#"{"rowsSynced":15800,"rowsRejected":12}"#),
    ));
    ns.kubectl_apply(&sequence_yaml(
        "crm",
        &[("accounts", ""), ("workspaces", ""), ("contacts", "")],
        "",
    ));
}

/// The line of the timeline table for `step`, split into columns, without the AFTER column
/// (one word in these linear sequences: the step before, or `-` for the first).
fn step_line<'a>(out: &'a str, step: &str) -> (usize, Vec<&'a str>) {
    out.lines()
        .enumerate()
        .find(|(_, l)| l.starts_with(&format!("{step} ")))
        .map(|(i, l)| {
            let mut cols: Vec<&str> = l.split_whitespace().collect();
            cols.remove(1);
            (i, cols)
        })
        .unwrap_or_else(|| panic!("no line for step {step} in:\n{out}"))
}

#[tokio::test]
async fn run_wait_then_status_history_suspend_and_resume() {
    install_crds().await;
    let ns = TestNamespace::new("plugin-run").await;
    crm(&ns).await;
    let _controller = ControllerProcess::start(&ns.name);

    let out = plugin(&ns.name, &["run", "crm", "--wait", "--timeout", "90s"]);
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = text(&out.stdout);
    let first = stdout.lines().next().unwrap();
    assert!(
        first.starts_with("syncsequence.syncseq.dev/crm run requested (syncseq.dev/requestedAt=")
            && first.ends_with(')'),
        "{stdout}"
    );
    // The value is an RFC 3339 timestamp with nanoseconds, echoed by the controller.
    let value = first
        .split_once("requestedAt=")
        .unwrap()
        .1
        .trim_end_matches(')');
    assert!(value.parse::<jiff::Timestamp>().is_ok(), "{value}");
    assert_eq!(
        value.split_once('.').unwrap().1.len(),
        10,
        "nanos + Z: {value}"
    );
    assert!(
        stdout.contains("Run 1 (Manual)  Succeeded  step 3/3"),
        "{stdout}"
    );
    // Three steps, in order, each Succeeded with its rows and Job.
    let mut previous = 0;
    for (step, synced, rejected) in [
        ("accounts", "1200", "0"),
        ("workspaces", "340", "2"),
        ("contacts", "15800", "12"),
    ] {
        let (at, cols) = step_line(&stdout, step);
        assert!(at > previous, "{step} out of order:\n{stdout}");
        previous = at;
        assert_eq!(cols[1], "Succeeded", "{stdout}");
        assert!(
            cols[2].starts_with('+') && cols[3].ends_with('s'),
            "{stdout}"
        );
        assert_eq!((cols[4], cols[5]), (synced, rejected), "{stdout}");
        assert!(cols[6].starts_with(&format!("crm-1-{step}-")), "{stdout}");
    }
    assert!(
        step_line(&stdout, "workspaces")
            .1
            .ends_with(&["2", "owners", "missing"]),
        "{stdout}"
    );
    // Progress went to stderr as the steps moved.
    let stderr = text(&out.stderr);
    assert!(stderr.contains("run 1 started"), "{stderr}");
    assert!(
        stderr.contains("run 1: step contacts Succeeded"),
        "{stderr}"
    );

    // status: no run in progress, so the last finished one, saying so. The namespace comes
    // from the kubeconfig context when -n is not given.
    let scratch = ScratchDir::new(&ns);
    let kubeconfig = scratch.kubeconfig_defaulting_to(&ns.name);
    let out = Command::new(env!("CARGO_BIN_EXE_syncseq"))
        .args(["plugin", "status", "crm", "--kubeconfig"])
        .arg(&kubeconfig)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let status = text(&out.stdout);
    let lines: Vec<&str> = status.lines().collect();
    assert_eq!(
        lines[0], "No run in progress; the last finished run:",
        "{status}"
    );
    assert!(
        lines[1].starts_with("Run 1 (Manual)  Succeeded  step 3/3  started ")
            && lines[1].ends_with("next schedule: none (manual only)"),
        "{status}"
    );
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        [
            "STEP", "AFTER", "PHASE", "START", "DURATION", "SYNCED", "REJECTED", "JOB", "MESSAGE"
        ]
    );
    // A linear sequence: each step after the one listed before it.
    for (step, after) in [
        ("accounts", "-"),
        ("workspaces", "accounts"),
        ("contacts", "workspaces"),
    ] {
        let line = status.lines().find(|l| l.starts_with(&format!("{step} ")));
        assert_eq!(
            line.and_then(|l| l.split_whitespace().nth(1)),
            Some(after),
            "{status}"
        );
    }
    assert_eq!(step_line(&status, "contacts").1[1], "Succeeded");

    let out = plugin(&ns.name, &["status", "crm", "-o", "yaml"]);
    assert!(out.status.success(), "{}", describe(&out));
    let yaml: serde_json::Value = serde_saphyr::from_slice(&out.stdout).unwrap();
    assert_eq!(yaml["lastRun"]["phase"].as_str(), Some("Succeeded"));
    assert_eq!(yaml["lastHandledRequestAt"].as_str(), Some(value));

    // history: a table, and the runs as JSON.
    let out = plugin(&ns.name, &["history", "crm"]);
    assert!(out.status.success(), "{}", describe(&out));
    let history = text(&out.stdout);
    let rows: Vec<Vec<&str>> = history
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        [
            "ID", "TRIGGER", "PHASE", "STARTED", "DURATION", "FAILED", "STEP", "MESSAGE"
        ],
        "{history}"
    );
    assert_eq!(rows.len(), 2, "{history}");
    assert_eq!(&rows[1][..3], ["1", "Manual", "Succeeded"], "{history}");

    let out = plugin(&ns.name, &["history", "crm", "-o", "json"]);
    assert!(out.status.success(), "{}", describe(&out));
    let runs: Vec<RunSummary> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!((runs[0].id, runs[0].phase), (1, RunPhase::Succeeded));
    assert!(runs[0].completion_time.is_some());

    // suspend / resume patch spec.suspend.
    let api = ns.api::<SyncSequence>();
    let out = plugin(&ns.name, &["suspend", "crm"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        text(&out.stdout),
        "syncsequence.syncseq.dev/crm suspended\n"
    );
    assert!(api.get("crm").await.unwrap().spec.scheduling.suspend);
    let out = plugin(&ns.name, &["status", "crm"]);
    assert!(
        text(&out.stdout).contains("next schedule: none (suspended)"),
        "{}",
        describe(&out)
    );
    let out = plugin(&ns.name, &["resume", "crm"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(text(&out.stdout), "syncsequence.syncseq.dev/crm resumed\n");
    assert!(!api.get("crm").await.unwrap().spec.scheduling.suspend);
}

/// Runs `kubectl-syncseq ARGS` through the symlink, so the binary dispatches on argv[0].
fn via_symlink(link: &Path, ns: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(link);
    cmd.args(args)
        .args(["-n", ns, "--kubeconfig"])
        .arg(kubeconfig_path())
        .env_remove("KUBECONFIG");
    cmd
}

#[tokio::test]
async fn cancel_during_a_long_step_through_the_kubectl_syncseq_symlink() {
    install_crds().await;
    let ns = TestNamespace::new("plugin-cancel").await;
    ns.kubectl_apply(&sync_yaml("quick", "200ms", 0, None));
    ns.kubectl_apply(&sync_yaml("slow", "1h", 0, None));
    ns.kubectl_apply(&sequence_yaml(
        "pipeline",
        &[("quick", ""), ("slow", "")],
        "",
    ));
    let _controller = ControllerProcess::start(&ns.name);
    let scratch = ScratchDir::new(&ns);
    let link = scratch.plugin_symlink();

    // A waiting `run` in the background: it must end with exit 1 when the run is cancelled.
    let waiting = via_symlink(
        &link,
        &ns.name,
        &["run", "pipeline", "--wait", "--timeout", "2m"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let api = ns.api::<SyncSequence>();
    wait_for_object(&api, "pipeline", RUN_DEADLINE, "step slow Running", |s| {
        s.status
            .as_ref()
            .and_then(|st| st.book.current_run.as_deref())
            .is_some_and(|r| r.steps[1].phase == StepPhase::Running)
    })
    .await;

    // The same binary answers `kubectl syncseq` when the symlink is on PATH.
    let path = std::env::join_paths(std::iter::once(scratch.0.clone()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let out = Command::new("kubectl")
        .args([
            "syncseq",
            "status",
            "pipeline",
            "-n",
            &ns.name,
            "--kubeconfig",
        ])
        .arg(kubeconfig_path())
        .env("PATH", path)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let status = text(&out.stdout);
    assert!(
        status.starts_with("Run 1 (Manual)  Running  step 2/2"),
        "{status}"
    );
    assert_eq!(step_line(&status, "quick").1[1], "Succeeded", "{status}");
    let (_, slow) = step_line(&status, "slow");
    assert_eq!(slow[1], "Running", "{status}");
    assert!(
        slow[3].ends_with('s'),
        "running steps show elapsed time: {status}"
    );

    let out = via_symlink(
        &link,
        &ns.name,
        &["cancel", "pipeline", "--wait", "--timeout", "60s"],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with(
            "syncsequence.syncseq.dev/pipeline cancel requested (syncseq.dev/cancelRequestedAt="
        ),
        "{stdout}"
    );
    assert!(stdout.contains("Run 1 (Manual)  Cancelled"), "{stdout}");
    assert_eq!(step_line(&stdout, "slow").1[1], "Cancelled", "{stdout}");

    let run = waiting.wait_with_output().unwrap();
    assert_eq!(run.status.code(), Some(1), "{}", describe(&run));
    assert!(
        text(&run.stderr).ends_with(
            "error: run 1 of syncsequence.syncseq.dev/pipeline ended Cancelled: run cancelled by request\n"
        ),
        "{}",
        describe(&run)
    );
    assert!(
        text(&run.stdout).contains("Run 1 (Manual)  Cancelled"),
        "{}",
        describe(&run)
    );

    let seq = api.get("pipeline").await.unwrap();
    assert_eq!(last_phase(&seq), Some(RunPhase::Cancelled));

    let out = via_symlink(&link, &ns.name, &["history", "pipeline", "-o", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let runs: Vec<RunSummary> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].phase, RunPhase::Cancelled);
}

#[tokio::test]
async fn errors_read_like_kubectl() {
    install_crds().await;
    let ns = TestNamespace::new("plugin-errors").await;
    for args in [
        vec!["status", "nope"],
        vec!["history", "nope", "-o", "json"],
        vec!["run", "nope"],
        vec!["cancel", "nope"],
        vec!["suspend", "nope"],
    ] {
        let out = plugin(&ns.name, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", describe(&out));
        assert_eq!(
            text(&out.stderr),
            "error: syncsequences.syncseq.dev \"nope\" not found\n",
            "{args:?}"
        );
        assert!(out.stdout.is_empty(), "{args:?}: {}", describe(&out));
    }
    // A sequence that never ran.
    ns.kubectl_apply(&sequence_yaml("idle", &[("a", "")], ""));
    let out = plugin(&ns.name, &["status", "idle"]);
    assert_eq!(
        text(&out.stdout),
        "syncsequence.syncseq.dev/idle has not run yet  next schedule: none (manual only)\n",
        "{}",
        describe(&out)
    );
    let out = plugin(&ns.name, &["history", "idle"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        text(&out.stderr),
        "No runs of syncsequence.syncseq.dev/idle yet.\n"
    );
    // Usage errors exit 2, as kubectl's do.
    let out = plugin(&ns.name, &["run"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let out = plugin(&ns.name, &["history", "idle", "-o", "wide"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
}

#[tokio::test]
async fn logs_show_the_failed_step_and_follow_a_running_one() {
    use support::pod_logs::PodLog;
    install_crds().await;
    let ns = TestNamespace::new("plugin-logs").await;
    ns.kubectl_apply(&sync_yaml("accounts", "200ms", 0, None));
    ns.kubectl_apply(&sync_yaml(
        "workspaces",
        "200ms",
        1,
        Some(r#"{"message":"HTTP 500 from the CRM"}"#),
    ));
    ns.kubectl_apply(&sync_yaml("contacts", "200ms", 0, None));
    ns.kubectl_apply(&sequence_yaml(
        "crm",
        &[("accounts", ""), ("workspaces", ""), ("contacts", "")],
        "",
    ));
    ns.kubectl_apply(&sync_yaml("slow", "15s", 0, None));
    let _controller = ControllerProcess::start(&ns.name);

    // Before any run there is nothing to show, and it says so.
    let out = plugin(&ns.name, &["logs", "crm"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(
        text(&out.stderr),
        "error: syncsequence.syncseq.dev/crm has not run yet\n"
    );

    trigger(&ns, "crm", "1").await;
    let seq = wait_for_run(&ns, "crm", 1, RUN_DEADLINE).await;
    assert_eq!(last_phase(&seq), Some(RunPhase::Failed));
    // Each step's Pod gets a log of its own, with a control sequence a container could
    // print to mess with a terminal.
    let pods = step_pods(&ns).await;
    assert_eq!(
        pods.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(),
        ["accounts", "workspaces"],
        "contacts never ran"
    );
    let _logs: Vec<PodLog> = pods
        .iter()
        .map(|(step, pod)| {
            PodLog::serve(
                &ns,
                pod,
                "sync",
                &[
                    &format!("{step}: starting"),
                    &format!("{step}: \u{1b}[31mPOST /crm/{step} -> HTTP 500\u{1b}[0m"),
                ],
            )
        })
        .collect();

    // By default: the failed step of the last run. kwok picks the Logs object up from a watch.
    let out = eventually(Duration::from_secs(20), "the failed step's log", || async {
        let out = plugin(&ns.name, &["logs", "crm"]);
        out.status.success().then_some(out)
    })
    .await;
    assert_eq!(
        text(&out.stdout),
        "workspaces: starting\nworkspaces: POST /crm/workspaces -> HTTP 500\n",
        "{}",
        describe(&out)
    );
    // Another step, by run and name; a step that does not exist names the ones that do.
    let out = plugin(
        &ns.name,
        &["logs", "crm", "--run", "1", "--step", "accounts"],
    );
    assert_eq!(
        text(&out.stdout),
        "accounts: starting\naccounts: POST /crm/accounts -> HTTP 500\n",
        "{}",
        describe(&out)
    );
    let out = plugin(&ns.name, &["logs", "crm", "--step", "billing"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("(its steps: accounts, workspaces, contacts)"),
        "{}",
        describe(&out)
    );
    let out = plugin(
        &ns.name,
        &["logs", "crm", "--all-containers", "--tail", "1"],
    );
    assert_eq!(
        text(&out.stdout),
        "workspaces: POST /crm/workspaces -> HTTP 500\n",
        "{}",
        describe(&out)
    );

    // -f on a standalone Sync's step while it runs: lines written later arrive, and the
    // command ends by itself when the Pod does.
    let out = plugin(&ns.name, &["run", "sync/slow"]);
    assert!(out.status.success(), "{}", describe(&out));
    let pod = eventually(Duration::from_secs(30), "the slow Sync's Pod", || async {
        step_pods(&ns)
            .await
            .into_iter()
            .find(|(step, pod)| step == "run" && pod.starts_with("slow-"))
            .map(|(_, pod)| pod)
    })
    .await;
    let log = PodLog::serve(&ns, &pod, "sync", &["slow: started"]);
    // The Logs object reaches kwok through a watch: wait until the log is served.
    eventually(Duration::from_secs(20), "the slow Pod's log", || async {
        let out = plugin(&ns.name, &["logs", "sync/slow"]);
        text(&out.stdout).contains("slow: started").then_some(())
    })
    .await;
    let mut follow = plugin_command(&ns.name, &["logs", "sync/slow", "-f"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_line = |what: &str| {
        lines_rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no line {what} from logs -f"))
    };
    assert_eq!(next_line("already written"), "slow: started");
    log.append("stdout", "slow: 500 of 1000 rows");
    assert_eq!(next_line("appended"), "slow: 500 of 1000 rows");
    let ended = eventually(
        Duration::from_secs(40),
        "logs -f to end with the Pod",
        || {
            let done = follow.try_wait().unwrap();
            async move { done }
        },
    )
    .await;
    assert!(ended.success(), "logs -f exited {ended:?}");
}

#[tokio::test]
async fn status_lists_watches_and_prints_jsonpath_for_both_kinds() {
    install_crds().await;
    let ns = TestNamespace::new("plugin-list").await;
    crm(&ns).await;
    ns.kubectl_apply(&sync_yaml("solo", "200ms", 0, Some(r#"{"rowsSynced":7}"#)));
    let _controller = ControllerProcess::start(&ns.name);

    let out = plugin(&ns.name, &["run", "crm", "--wait", "--timeout", "90s"]);
    assert!(out.status.success(), "{}", describe(&out));
    let out = plugin(
        &ns.name,
        &["run", "sync/solo", "--wait", "--timeout", "60s"],
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stdout).starts_with("sync.syncseq.dev/solo run requested"),
        "{}",
        describe(&out)
    );

    // Without a name: a line per object of the namespace, sequences first.
    let out = plugin(&ns.name, &["status"]);
    assert!(out.status.success(), "{}", describe(&out));
    let listing = text(&out.stdout);
    let names: Vec<&str> = listing
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "syncsequence/crm",
            "sync/accounts",
            "sync/contacts",
            "sync/solo",
            "sync/workspaces"
        ],
        "{listing}"
    );
    let crm_line = listing.lines().nth(1).unwrap();
    assert!(crm_line.contains(" Succeeded "), "{listing}");
    assert!(crm_line.contains(" ago "), "{listing}");
    // -A adds the namespace; this test's objects are among everyone's.
    let out = plugin(&ns.name, &["status", "-A"]);
    assert!(out.status.success(), "{}", describe(&out));
    let everyone = text(&out.stdout);
    assert!(everyone.starts_with("NAMESPACE "), "{everyone}");
    assert!(
        everyone
            .lines()
            .any(|l| l.starts_with(&format!("{}   sync/solo ", ns.name))
                || l.split_whitespace()
                    .take(2)
                    .eq([ns.name.as_str(), "sync/solo"])),
        "{everyone}"
    );

    // jsonpath on the status, for both kinds.
    let out = plugin(
        &ns.name,
        &[
            "status",
            "crm",
            "-o",
            r#"jsonpath={range .lastRun.steps[*]}{.name}={.rowsSynced}{"\n"}{end}"#,
        ],
    );
    assert_eq!(
        text(&out.stdout),
        "accounts=1200\nworkspaces=340\ncontacts=15800\n",
        "{}",
        describe(&out)
    );
    let out = plugin(
        &ns.name,
        &[
            "status",
            "sync/solo",
            "-o",
            "jsonpath={.lastRun.rowsSynced}",
        ],
    );
    assert_eq!(text(&out.stdout), "7", "{}", describe(&out));
    let out = plugin(&ns.name, &["history", "sync/solo"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stdout)
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("1 ") && l.contains("Succeeded")),
        "{}",
        describe(&out)
    );
    let out = plugin(&ns.name, &["status", "sync/accounts"]);
    assert!(
        text(&out.stdout).contains("sequence crm/1"),
        "a Sync's last run says which sequence run it was: {}",
        describe(&out)
    );

    // -w prints the timeline again when the status changes: here, a second run.
    let mut watching = plugin_command(&ns.name, &["status", "crm", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = watching.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(first.starts_with("No run in progress"), "{first}");
    trigger(&ns, "crm", "second").await;
    let deadline = std::time::Instant::now() + RUN_DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("status -w printed no timeline of run 2");
        if line.starts_with("Run 2 (Manual)") {
            break;
        }
    }
    let _ = watching.kill();
    let _ = watching.wait();
}

/// `backfill` on an hourly sequence: --dry-run lists the fire times and writes nothing, a
/// range past the limit is refused with its count before any write, and a real one sets the
/// annotations and, with --wait, follows the backfill until it Succeeded.
#[tokio::test]
async fn backfill_dry_run_refusal_and_a_real_one_through_the_plugin() {
    install_crds().await;
    let ns = TestNamespace::new("plugin-backfill").await;
    crm(&ns).await;
    // Suspended, so the schedule's own runs leave the backfill every gap.
    ns.kubectl_apply(&sequence_yaml(
        "crm",
        &[("accounts", ""), ("workspaces", ""), ("contacts", "")],
        "  schedule: \"0 * * * *\"\n  suspend: true\n",
    ));
    let _controller = ControllerProcess::start(&ns.name);
    let api = ns.api::<SyncSequence>();
    let hour = jiff::Timestamp::now()
        .round(
            jiff::TimestampRound::new()
                .smallest(jiff::Unit::Hour)
                .mode(jiff::RoundMode::Trunc),
        )
        .unwrap();
    let hours_before = |n: i64| (hour - jiff::SignedDuration::from_hours(n)).to_string();
    let annotations = |seq: &SyncSequence| {
        seq.metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| k.starts_with("syncseq.dev/backfill"))
            .collect::<std::collections::BTreeMap<_, _>>()
    };

    let (from, to) = (hours_before(3), hours_before(0));
    let out = plugin(
        &ns.name,
        &["backfill", "crm", "--from", &from, "--to", &to, "--dry-run"],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let table = text(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["#", "FIRE", "TIME", "INTERVAL", "START", "INTERVAL", "END"],
        "{table}"
    );
    for (row, n) in lines[1..4].iter().zip([3, 2, 1]) {
        let fire = hours_before(n);
        assert_eq!(
            row.split_whitespace().skip(1).collect::<Vec<_>>(),
            [fire.as_str(), &hours_before(n + 1), &fire],
            "{table}"
        );
    }
    assert_eq!(lines[4..], ["3 fire times; nothing was written"], "{table}");
    assert!(annotations(&api.get("crm").await.unwrap()).is_empty());

    let out = plugin(
        &ns.name,
        &[
            "backfill",
            "crm",
            "--from",
            &hours_before(2000),
            "--to",
            &to,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(
        text(&out.stderr),
        format!(
            "error: backfill refused: the range from {} to {to} has 2000 fire times, more than the limit of 1000 (syncseq.dev/backfillMaxRuns raises it, up to 10000)\n",
            hours_before(2000)
        ),
        "{}",
        describe(&out)
    );
    assert!(annotations(&api.get("crm").await.unwrap()).is_empty());

    let from = hours_before(2);
    let out = plugin(
        &ns.name,
        &[
            "backfill",
            "crm",
            "--from",
            &from,
            "--to",
            &to,
            "--wait",
            "--timeout",
            "120s",
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with(&format!(
            "syncsequence.syncseq.dev/crm backfill of 2 fire times from {from} to {to} requested (syncseq.dev/backfillRequestedAt="
        )) && stdout.contains("follow it with kubectl syncseq status crm\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "Backfill: Succeeded  2/2 runs done  {from} → {to}  ended "
        )),
        "{stdout}"
    );
    assert!(
        text(&out.stderr).contains("running fire time"),
        "{}",
        describe(&out)
    );
    let seq = api.get("crm").await.unwrap();
    let set = annotations(&seq);
    assert_eq!(
        set.get("syncseq.dev/backfill"),
        Some(&format!("{from}/{to}"))
    );
    assert!(!set.contains_key("syncseq.dev/backfillMaxRuns"), "{set:?}");
    let bf = seq
        .status
        .as_ref()
        .and_then(|s| s.book.backfill.as_deref())
        .expect("status.backfill");
    assert_eq!(
        Some(&bf.requested_at),
        set.get("syncseq.dev/backfillRequestedAt")
    );
    assert_eq!(
        (bf.phase, bf.succeeded, bf.failed),
        (syncseq::api::BackfillPhase::Succeeded, 2, 0)
    );
    // Its two runs, oldest fire time first, each a Backfill run.
    let runs = &seq.status.as_ref().unwrap().book.runs;
    let fires: Vec<(i64, String)> = runs
        .iter()
        .rev()
        .map(|r| {
            assert_eq!(r.trigger, syncseq::api::TriggerKind::Backfill);
            (r.id, r.scheduled_time.as_ref().unwrap().0.to_string())
        })
        .collect();
    assert_eq!(fires, [(1, from.clone()), (2, hours_before(1))]);
    let out = plugin(&ns.name, &["status", "crm"]);
    assert!(
        text(&out.stdout).contains("Backfill: Succeeded  2/2 runs done"),
        "{}",
        describe(&out)
    );
}
