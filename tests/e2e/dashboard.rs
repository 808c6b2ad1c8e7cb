//! `kubectl syncseq dashboard`, driven by headless Chromium (Debian's `chromium` package): the
//! page loads without console errors, shows a failed and a running sequence, and the running
//! bar grows; the overview of a thousand sequences is timed; and what a user's RBAC hides
//! stays hidden.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::fixtures::*;
use crate::support::*;
use syncseq::api::{RunPhase, StepPhase, SyncSequence};

/// A dashboard process, stopped when dropped.
struct Dashboard {
    child: Child,
    url: String,
}

impl Dashboard {
    fn start(ns: &str, args: &[&str], kubeconfig: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_syncseq"))
            .args([
                "plugin",
                "dashboard",
                "--port",
                "0",
                "-n",
                ns,
                "--kubeconfig",
            ])
            .arg(kubeconfig)
            .args(args)
            .env_remove("KUBECONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the dashboard");
        // Its first line names the address it listens on.
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .expect("read the dashboard's address");
        let url = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {first:?}"))
            .trim_end_matches('/')
            .to_string();
        Dashboard { child, url }
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Headless Chromium, bounded: a page that never settles fails the test instead of hanging it.
fn chromium() -> Command {
    let found = Command::new("chromium").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "headless Chromium is needed: apt-get install chromium"
    );
    let mut cmd = Command::new("timeout");
    cmd.args([
        "60",
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
    ]);
    cmd
}

/// A page as headless Chromium has it once loaded (its script has run): its DOM, and what it
/// logged to the console. (Not with --virtual-time-budget: virtual time stands still while a
/// request is open, and the page keeps one open for its changes.)
fn load(url: &str) -> (String, Vec<String>) {
    let out = chromium()
        .args([
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,800",
            "--dump-dom",
            url,
        ])
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "chromium on {url}: {:?}", out.status);
    let console = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(String::from)
        .collect();
    (String::from_utf8_lossy(&out.stdout).into_owned(), console)
}

fn screenshot(url: &str, out: &Path, width: u32, height: u32) {
    let status = chromium()
        .args([
            "--hide-scrollbars",
            &format!("--window-size={width},{height}"),
        ])
        .arg(format!("--screenshot={}", out.display()))
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        status.status.success() && out.exists(),
        "screenshot {}: {}",
        out.display(),
        String::from_utf8_lossy(&status.stderr)
    );
}

/// Whether a page's change stream (server-sent events) says `changed` once `change` changes the
/// object: `change` is made again until it does, since a change made before the stream's
/// watches have listed is part of their list, not a change.
async fn sends_changes<F, Fut>(url: &str, mut change: F)
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut curl = Command::new("curl")
        .args(["-sN", "--max-time", "60", url])
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl");
    let stdout = curl.stdout.take().unwrap();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    std::thread::spawn({
        let seen = seen.clone();
        move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line == "event: changed" {
                    seen.store(true, std::sync::atomic::Ordering::SeqCst);
                    return;
                }
            }
        }
    });
    let mut n = 0;
    eventually(
        Duration::from_secs(30),
        &format!("a changed event from {url}"),
        || {
            n += 1;
            let done = seen.load(std::sync::atomic::Ordering::SeqCst);
            let next = (!done && n % 10 == 1).then(|| change(n));
            async move {
                if let Some(change) = next {
                    change.await;
                }
                done.then_some(())
            }
        },
    )
    .await;
    let _ = curl.kill();
    let _ = curl.wait();
}

/// The width (percent of the axis) of the first running bar in a DOM.
fn running_width(dom: &str) -> f64 {
    let bar = dom
        .split("<a ")
        .find(|a| a.contains(r#"data-running="1""#))
        .unwrap_or_else(|| panic!("no running bar in {dom}"));
    let width = bar
        .split("width:")
        .nth(1)
        .and_then(|w| w.split('%').next())
        .unwrap_or_else(|| panic!("no width in {bar}"));
    width.trim().parse().unwrap()
}

fn shots_dir() -> PathBuf {
    let dir = repo_root().join("target/dashboard");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn the_dashboard_shows_a_failed_and_a_running_sequence_and_the_bar_grows() {
    install_crds().await;
    let ns = TestNamespace::new("dashboard").await;
    ns.kubectl_apply(&sync_yaml("accounts", "300ms", 0, None));
    ns.kubectl_apply(&sync_yaml(
        "workspaces",
        "300ms",
        3,
        Some(r#"{"message":"CRM API said 503 for workspace 42"}"#),
    ));
    ns.kubectl_apply(&sync_yaml("contacts", "300ms", 0, None));
    ns.kubectl_apply(&sequence_yaml(
        "crm",
        &[("accounts", ""), ("workspaces", ""), ("contacts", "")],
        "",
    ));
    ns.kubectl_apply(&sync_yaml("campaigns", "300ms", 0, None));
    ns.kubectl_apply(&sync_yaml("audiences", "1h", 0, None));
    ns.kubectl_apply(&sequence_yaml(
        "ads",
        &[("campaigns", ""), ("audiences", "")],
        "",
    ));
    let _controller = ControllerProcess::start(&ns.name);
    trigger(&ns, "crm", "1").await;
    trigger(&ns, "ads", "1").await;
    let crm = wait_for_run(&ns, "crm", 1, Duration::from_secs(60)).await;
    assert_eq!(last_phase(&crm), Some(RunPhase::Failed));
    wait_for_object(
        &ns.api::<SyncSequence>(),
        "ads",
        Duration::from_secs(60),
        "ads on its second step",
        |s: &SyncSequence| {
            s.status
                .as_ref()
                .and_then(|st| st.book.current_run.as_deref())
                .is_some_and(|r| r.steps[1].phase == StepPhase::Running)
        },
    )
    .await;

    // The failed step's container said why on its way out, in colour.
    let failed_pod = step_pods(&ns)
        .await
        .into_iter()
        .find(|(step, _)| step == "workspaces")
        .map(|(_, pod)| pod)
        .expect("the workspaces Pod");
    let _log = crate::support::pod_logs::PodLog::serve(
        &ns,
        &failed_pod,
        "sync",
        &[
            "upserting 340 workspaces",
            "\u{1b}[31mERROR\u{1b}[0m 503 from /workspaces/42",
        ],
    );

    let dashboard = Dashboard::start(&ns.name, &[], &kubeconfig_path());
    let (overview, console) = load(&format!("{}/", dashboard.url));
    assert!(console.is_empty(), "console: {console:?}");
    assert!(
        overview.contains("syncsequence/crm") && overview.contains("syncsequence/ads"),
        "{overview}"
    );
    assert!(overview.contains("Failed"), "{overview}");

    let crm_page = format!("{}/ns/{}/syncsequence/crm", dashboard.url, ns.name);
    let (dom, console) = load(&crm_page);
    assert!(console.is_empty(), "console: {console:?}");
    assert!(dom.contains("CRM API said 503 for workspace 42"), "{dom}");
    assert!(dom.contains("workspaces (attempt 1) · ✗ Failed"), "{dom}");
    assert!(dom.contains("✓ Succeeded"), "{dom}");
    assert!(
        dom.contains("upserting 340 workspaces\nERROR 503 from /workspaces/42"),
        "the failed step's log tail, without its escape sequences: {dom}"
    );

    // The running bar grows: two screenshots seconds apart, and the widths in their DOMs.
    let ads_page = format!("{}/ns/{}/syncsequence/ads", dashboard.url, ns.name);
    let dir = shots_dir();
    let (first, console) = load(&ads_page);
    assert!(console.is_empty(), "console: {console:?}");
    assert!(
        first.contains("audiences (attempt 1) · ▶ Running"),
        "{first}"
    );
    screenshot(&ads_page, &dir.join("ads-1.png"), 1280, 800);
    let w0 = running_width(&first);
    let w1 = eventually(
        Duration::from_secs(30),
        "the running bar to grow",
        || async {
            let (later, _) = load(&ads_page);
            let w = running_width(&later);
            (w > w0 + 1.0).then_some(w)
        },
    )
    .await;
    screenshot(&ads_page, &dir.join("ads-2.png"), 1280, 800);
    assert_ne!(
        std::fs::read(dir.join("ads-1.png")).unwrap(),
        std::fs::read(dir.join("ads-2.png")).unwrap(),
        "the bar grew from {w0}% to {w1}% between the screenshots"
    );
    screenshot(&crm_page, &dir.join("crm.png"), 1280, 800);
    screenshot(&crm_page, &dir.join("crm-phone.png"), 390, 844);

    // The open page hears of changes from a watch: a request on the sequence is one.
    let ns_name = ns.name.clone();
    sends_changes(&format!("{ads_page}/changes"), |n| {
        let ns_name = ns_name.clone();
        async move {
            let out = kubectl(
                &[
                    "annotate",
                    "--overwrite",
                    "-n",
                    &ns_name,
                    "sseq/ads",
                    &format!("example.com/poke={n}"),
                ],
                None,
            );
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    })
    .await;
}

#[tokio::test]
async fn the_overview_of_a_thousand_sequences_is_paged_and_timed() {
    install_crds().await;
    let ns = TestNamespace::new("dash-1000").await;
    let mut yaml = String::new();
    for i in 0..1000 {
        yaml.push_str(&sequence_yaml(
            &format!("seq-{i:04}"),
            &[("accounts", "")],
            "  schedule: '@hourly'\n",
        ));
        yaml.push_str("---\n");
    }
    let out = kubectl(
        &["apply", "--server-side", "-n", &ns.name, "-f", "-"],
        Some(&yaml),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dashboard = Dashboard::start(&ns.name, &[], &kubeconfig_path());
    let url = format!("{}/", dashboard.url);
    let started = Instant::now();
    let (status, body) = http_get(&dashboard.url.replace("http://", ""), "/").await;
    let served = started.elapsed();
    assert_eq!(status, 200);
    assert!(body.contains("1000 objects in namespace"), "{body}");
    assert!(body.contains("page 1 of 10"), "{body}");
    assert_eq!(
        body.matches("<th scope=\"row\">").count(),
        100,
        "one page of 100"
    );
    // Chromium's own start, to tell it apart from the page's load.
    let started = Instant::now();
    load("about:blank");
    let browser = started.elapsed();
    let started = Instant::now();
    let (dom, console) = load(&url);
    let rendered = started.elapsed();
    assert!(console.is_empty(), "console: {console:?}");
    assert!(
        dom.contains("seq-0099") && !dom.contains("seq-0100"),
        "the first page only"
    );
    // Reported, not asserted: the target is under 1 s on the 2-core machine.
    eprintln!(
        "dashboard, 1000 sequences: first page served in {} ms; loaded and rendered by headless \
         Chromium in {} ms, of which {} ms are the browser's start (about:blank)",
        served.as_millis(),
        rendered.as_millis(),
        browser.as_millis()
    );
}

#[tokio::test]
async fn a_user_who_may_read_one_namespace_sees_an_error_for_the_others_not_their_data() {
    install_crds().await;
    let mine = TestNamespace::new("dash-mine").await;
    let theirs = TestNamespace::new("dash-theirs").await;
    mine.kubectl_apply(&sequence_yaml("my-crm", &[("accounts", "")], ""));
    theirs.kubectl_apply(&sequence_yaml("their-secret-crm", &[("accounts", "")], ""));
    // A ServiceAccount that may read SyncSequences and Syncs in its own namespace only.
    mine.kubectl_apply(
        r#"apiVersion: v1
kind: ServiceAccount
metadata: {name: reader}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: syncseq-reader}
rules:
- apiGroups: [syncseq.dev]
  resources: [syncsequences, syncs]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: syncseq-reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: syncseq-reader}
subjects:
- {kind: ServiceAccount, name: reader}
"#,
    );
    let kubeconfig = std::env::temp_dir().join(format!("{}-reader.kubeconfig", mine.name));
    let out = Command::new(repo_root().join("hack/sa-kubeconfig.sh"))
        .args([&mine.name, "reader"])
        .arg(&kubeconfig)
        .arg("10m")
        .env("KUBECONFIG", kubeconfig_path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dashboard = Dashboard::start(&mine.name, &["-A"], &kubeconfig);
    let (dom, console) = load(&format!("{}/", dashboard.url));
    let _ = std::fs::remove_file(&kubeconfig);
    assert!(console.is_empty(), "console: {console:?}");
    assert!(
        dom.contains("cannot list SyncSequences and Syncs in all namespaces")
            && dom.contains("forbidden"),
        "{dom}"
    );
    assert!(dom.contains("my-crm"), "its own namespace is shown: {dom}");
    assert!(
        !dom.contains("their-secret-crm"),
        "nothing of the other namespace: {dom}"
    );
    // Nor by asking for it directly.
    let (page, _) = load(&format!(
        "{}/ns/{}/syncsequence/their-secret-crm",
        dashboard.url, theirs.name
    ));
    assert!(
        page.contains("cannot read") && page.contains("forbidden"),
        "{page}"
    );
}
