//! Shared support for integration tests against the local control plane (`make cluster`).
//!
//! Each test gets its own namespace (deleted afterwards) and, where it needs one, its own
//! controller process scoped to that namespace, so tests run in parallel without seeing each
//! other. Waits are on conditions with deadlines, never bare sleeps.
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::await_condition;
use kube::{Api, Client, Config, Resource};
use serde::de::DeserializeOwned;

pub mod audit;
pub mod fixtures;
pub mod pod_logs;
pub mod proxy;
pub mod receiver;
pub mod sender;
pub mod tls;
pub mod tunnel;

/// Repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The admin kubeconfig written by `make cluster` (override with `SYNCSEQ_KUBECONFIG`).
pub fn kubeconfig_path() -> PathBuf {
    std::env::var_os("SYNCSEQ_KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cluster/kubeconfig"))
}

/// A client for the local control plane. Fails with a hint when the cluster is not running.
pub async fn client() -> Client {
    let path = kubeconfig_path();
    let kubeconfig = Kubeconfig::read_from(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; start the local control plane with `make cluster`",
            path.display()
        )
    });
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    Client::try_from(config).expect("client")
}

/// Waits for `check` to return Some, polling it, up to `deadline`. For conditions a watch
/// cannot express (a raw endpoint, a count across objects); prefer [`wait_for_object`].
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits, with a watch, until the named object satisfies `cond`; returns the object.
pub async fn wait_for_object<K>(
    api: &Api<K>,
    name: &str,
    deadline: Duration,
    what: &str,
    cond: impl Fn(&K) -> bool,
) -> K
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let cond = std::sync::Arc::new(cond);
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let cond = cond.clone();
        let watched = await_condition(api.clone(), name, move |o: Option<&K>| {
            o.is_some_and(&*cond)
        });
        match tokio::time::timeout_at(until, watched).await {
            Ok(Ok(Some(obj))) => return obj,
            Ok(Ok(None)) => panic!("{name} was deleted while waiting for {what}"),
            // A watch the API server ends (`410 Expired` after a compaction, a dropped
            // connection) is what clients of a real cluster see: start it again, with a
            // fresh read, until the deadline.
            Ok(Err(e)) => {
                eprintln!("watch of {name} ended while waiting for {what} ({e}); watching again")
            }
            Err(_) => {
                let current = api.get_opt(name).await.ok().flatten();
                panic!(
                    "timed out after {deadline:?} waiting for {what}; {name} is now: {current:#?}"
                )
            }
        }
    }
}

/// The notes of the Events of `reason` about the named object, oldest first.
pub async fn event_notes(ns: &TestNamespace, object: &str, reason: &str) -> Vec<String> {
    let events: Api<k8s_openapi::api::events::v1::Event> = ns.api();
    let mut list: Vec<_> = events
        .list(&Default::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(object)
        })
        .collect();
    list.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
    list.into_iter().filter_map(|e| e.note).collect()
}

/// Waits until at least one Event of `reason` about the object exists (Events are recorded in
/// the background, after the action they report); returns all their notes.
pub async fn wait_event_notes(
    ns: &TestNamespace,
    object: &str,
    reason: &str,
    deadline: Duration,
) -> Vec<String> {
    eventually(
        deadline,
        &format!("a {reason} Event on {object}"),
        || async {
            let notes = event_notes(ns, object, reason).await;
            (!notes.is_empty()).then_some(notes)
        },
    )
    .await
}

/// Waits until the named object is gone.
pub async fn wait_for_deletion<K>(api: &Api<K>, name: &str, deadline: Duration)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let gone = await_condition(api.clone(), name, |o: Option<&K>| o.is_none());
    tokio::time::timeout(deadline, gone)
        .await
        .unwrap_or_else(|_| panic!("timed out after {deadline:?} waiting for {name} to be deleted"))
        .expect("watch");
}

/// A namespace that exists for one test and is deleted when dropped.
pub struct TestNamespace {
    pub name: String,
    pub client: Client,
}

impl TestNamespace {
    pub async fn new(prefix: &str) -> Self {
        let client = client().await;
        let suffix: String = format!("{:x}", rand_u64()).chars().take(6).collect();
        let name = format!("t-{prefix}-{suffix}");
        let ns = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        // The namespace's default ServiceAccount appears asynchronously; Pods need it.
        let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(client.clone(), &name);
        wait_for_object(
            &sas,
            "default",
            Duration::from_secs(30),
            "the default ServiceAccount",
            |_| true,
        )
        .await;
        TestNamespace { name, client }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Applies a multi-document YAML manifest into this namespace with `kubectl apply`, the way
    /// users do. Panics with kubectl's output on failure.
    pub fn kubectl_apply(&self, yaml: &str) {
        let out = kubectl(&["apply", "-n", &self.name, "-f", "-"], Some(yaml));
        assert!(
            out.status.success(),
            "kubectl apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::env::var_os("SYNCSEQ_KEEP_NAMESPACES").is_none() {
            let _ = kubectl(&["delete", "namespace", &self.name, "--wait=false"], None);
        }
    }
}

/// Runs kubectl against the local control plane.
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl is installed");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

/// GET `http://{address}{path}` (curl): the status code and the body.
pub async fn http_get(address: &str, path: &str) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            &format!("http://{address}{path}"),
        ])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Installs the CRDs from `crds/` (server-side apply, idempotent) and waits until established.
pub async fn install_crds() {
    static DONE: OnceLock<()> = OnceLock::new();
    if DONE.get().is_some() {
        return;
    }
    let client = client().await;
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> = Api::all(client);
    let yaml = std::fs::read_to_string(repo_root().join("crds/syncseq.dev_crds.yaml")).unwrap();
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&yaml).expect("CRDs are YAML");
    for value in docs {
        let name = value["metadata"]["name"].as_str().unwrap().to_string();
        crds.patch(
            &name,
            &PatchParams::apply("syncseq-tests").force(),
            &Patch::Apply(&value),
        )
        .await
        .expect("apply CRD");
        wait_for_object(
            &crds,
            &name,
            Duration::from_secs(30),
            "CRD Established",
            |c| {
                c.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c.type_ == "Established" && c.status == "True")
                    })
            },
        )
        .await;
    }
    let _ = DONE.set(());
}

/// The leader-election Lease the test controllers use in a namespace.
pub async fn lease(ns: &TestNamespace) -> Option<k8s_openapi::api::coordination::v1::Lease> {
    ns.api().get_opt("syncseq-controller").await.ok()?
}

/// Who holds that Lease.
pub async fn lease_holder(ns: &TestNamespace) -> Option<String> {
    lease(ns).await?.spec?.holder_identity
}

/// A `syncseq controller` process scoped to one namespace. Killed (SIGKILL) when dropped.
pub struct ControllerProcess {
    child: Option<Child>,
    namespace: String,
    log: PathBuf,
    extra_env: Vec<(String, String)>,
    identity: String,
    /// The kubeconfig it connects with, when not the usual one (see [`Self::start_through`]).
    kubeconfig: Option<PathBuf>,
    /// Watches every namespace (`namespace` then only names its log and identity).
    all_namespaces: bool,
    /// `--lease-duration-seconds`: short in tests, so that takeovers are quick.
    lease_seconds: u64,
    /// The `syncseq` it runs: this build's, or another release's (see [`Self::restart_as`]).
    binary: PathBuf,
}

impl ControllerProcess {
    pub fn start(namespace: &str) -> Self {
        Self::start_with_env(namespace, vec![])
    }

    pub fn start_with_env(namespace: &str, extra_env: Vec<(String, String)>) -> Self {
        Self::start_replica(namespace, "controller", extra_env)
    }

    /// A replica that does not take part in leader election: it reconciles at once, beside any
    /// other (two such replicas model a hand-over in which both briefly act).
    pub fn start_unelected(namespace: &str, identity: &str) -> Self {
        Self::start_replica(
            namespace,
            identity,
            vec![("SYNCSEQ_TEST_NO_LEADER_ELECTION".into(), "1".into())],
        )
    }

    /// A controller that reaches the API server through `kubeconfig` (a fault proxy's).
    pub fn start_through(
        namespace: &str,
        kubeconfig: &Path,
        extra_env: Vec<(String, String)>,
    ) -> Self {
        let mut p = Self::prepare(namespace, "controller", extra_env);
        p.kubeconfig = Some(kubeconfig.to_path_buf());
        p.spawn();
        p
    }

    /// A controller for all namespaces, as the chart installs it, without leader election
    /// (whose Lease would be shared). Only for a test binary that runs alone: it acts on
    /// every namespace's objects. `label` names its log and identity.
    pub fn start_cluster_wide(label: &str) -> Self {
        let mut p = Self::prepare(
            label,
            "cluster-wide",
            vec![("SYNCSEQ_TEST_NO_LEADER_ELECTION".into(), "1".into())],
        );
        p.all_namespaces = true;
        p.spawn();
        p
    }

    /// One replica of several: `identity` tells replicas apart in leader election.
    pub fn start_replica(
        namespace: &str,
        identity: &str,
        extra_env: Vec<(String, String)>,
    ) -> Self {
        let mut p = Self::prepare(namespace, identity, extra_env);
        p.spawn();
        p
    }

    fn prepare(namespace: &str, identity: &str, extra_env: Vec<(String, String)>) -> Self {
        let logs = repo_root().join(".cluster/logs");
        std::fs::create_dir_all(&logs).unwrap();
        let log = logs.join(format!("{identity}-{namespace}.log"));
        ControllerProcess {
            child: None,
            namespace: namespace.to_string(),
            log,
            extra_env,
            identity: identity.to_string(),
            kubeconfig: None,
            all_namespaces: false,
            lease_seconds: 6,
            binary: PathBuf::from(env!("CARGO_BIN_EXE_syncseq")),
        }
    }

    /// A controller with the production lease (15 s; a renewal may take up to 10 s): for the
    /// benchmark, whose API server is saturated for minutes.
    pub fn start_with_default_lease(namespace: &str, extra_env: Vec<(String, String)>) -> Self {
        Self::start_with_lease_of_production(namespace, "controller", extra_env)
    }

    /// A further replica (`identity`) with the production lease: the benchmark's standby, which
    /// must wait for the leader's 15 s lease as a production standby does.
    pub fn start_replica_with_default_lease(namespace: &str, identity: &str) -> Self {
        Self::start_with_lease_of_production(namespace, identity, vec![])
    }

    fn start_with_lease_of_production(
        namespace: &str,
        identity: &str,
        extra_env: Vec<(String, String)>,
    ) -> Self {
        let mut p = Self::prepare(namespace, identity, extra_env);
        p.lease_seconds = 15;
        p.spawn();
        p
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        // Leader election runs as in production, on a Lease in the test's namespace. The
        // identity is stable across restarts, so a restarted process reclaims its own lease at
        // once instead of waiting for it to expire (a second replica gets its own identity).
        let identity = self.identity();
        // hack/test-as-serviceaccount.sh runs the controllers as the Helm chart's ServiceAccount.
        let kubeconfig = self.kubeconfig.clone().unwrap_or_else(|| {
            std::env::var_os("SYNCSEQ_CONTROLLER_KUBECONFIG")
                .map(PathBuf::from)
                .unwrap_or_else(kubeconfig_path)
        });
        let unelected = self
            .extra_env
            .iter()
            .any(|(k, _)| k == "SYNCSEQ_TEST_NO_LEADER_ELECTION");
        let election: &[&str] =
            if unelected || std::env::var_os("SYNCSEQ_CONTROLLER_NO_LEADER_ELECTION").is_some() {
                &["--no-leader-election"]
            } else {
                &[]
            };
        // `SYNCSEQ_LOG` in the extra environment replaces the tests' log filter (the flag
        // would win over the variable): the benchmark's trace adds `syncseq::trace=trace`.
        let log_level = self
            .extra_env
            .iter()
            .find(|(k, _)| k == "SYNCSEQ_LOG")
            .map_or("info,syncseq=debug", |(_, v)| v.as_str());
        let child = Command::new(&self.binary)
            .args([
                "controller",
                "--log-level",
                log_level,
                "--metrics-address",
                "127.0.0.1:0",
                "--instance",
                &identity,
                "--lease-duration-seconds",
                &self.lease_seconds.to_string(),
            ])
            .args(if self.all_namespaces {
                vec![]
            } else {
                vec!["--namespace", &self.namespace]
            })
            .args(election)
            .env("KUBECONFIG", &kubeconfig)
            // The tests' webhook receivers listen on 127.0.0.1, which webhooks may not reach
            // by default; a test that checks the default sets this empty.
            .env("SYNCSEQ_WEBHOOK_ALLOW", "127.0.0.1")
            .envs(self.extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start syncseq controller");
        self.child = Some(child);
    }

    /// SIGKILL: no graceful shutdown, as when a node dies.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// SIGKILL, then the same replica (identity, namespace, lease) running `binary`: another
    /// release of syncseq taking over, as in an upgrade or a rollback.
    pub fn restart_as(&mut self, binary: &Path) {
        self.kill();
        self.binary = binary.to_path_buf();
        self.spawn();
    }

    /// The address the current process serves /metrics, /healthz and /readyz on (from its log).
    pub async fn metrics_address(&self) -> String {
        self.logged_address("serving /metrics").await
    }

    /// The address of the current process's webhook endpoint (started with
    /// `SYNCSEQ_RECEIVER_ADDRESS`), from its log.
    pub async fn receiver_address(&self) -> String {
        self.logged_address("serving webhook receivers").await
    }

    /// The `address=` of the newest log line that says `marker`.
    async fn logged_address(&self, marker: &str) -> String {
        let line = self.wait_for_log(marker, Duration::from_secs(30)).await;
        line.rsplit("address=")
            .next()
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// Waits until the controller's log (stdout and stderr) has a line that says `marker`;
    /// returns the newest such line.
    pub async fn wait_for_log(&self, marker: &str, deadline: Duration) -> String {
        let log = self.log.clone();
        eventually(
            deadline,
            &format!("'{marker}' in the controller's log"),
            || {
                let log = log.clone();
                async move {
                    let text = std::fs::read_to_string(&log).ok()?;
                    text.lines()
                        .rev()
                        .find(|l| l.contains(marker))
                        .map(str::to_string)
                }
            },
        )
        .await
    }

    /// Sends a signal by name (`STOP`, `CONT`, `TERM`) to the running process.
    pub fn signal(&self, name: &str) {
        let pid = self.pid().expect("a running controller").to_string();
        let status = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name} {pid}");
    }

    /// Waits until the process exits on its own; returns its exit status.
    pub async fn wait_exit(&mut self, deadline: Duration) -> std::process::ExitStatus {
        let child = self.child.as_mut().expect("a running controller");
        let status = eventually(deadline, "the controller process to exit", || {
            let status = child.try_wait().expect("try_wait");
            async move { status }
        })
        .await;
        self.child = None;
        status
    }

    /// Whether the process has exited on its own (it is then no longer tracked).
    pub fn exited(&mut self) -> bool {
        let gone = self
            .child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_some());
        if gone {
            self.child = None;
        }
        gone
    }

    /// The identity this replica uses for its Lease, its Events and its User-Agent.
    pub fn identity(&self) -> String {
        format!("{}-{}", self.identity, self.namespace)
    }

    /// The OS process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
