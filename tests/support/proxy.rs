//! A fault-injecting proxy between a controller under test and kube-apiserver.
//!
//! It listens on plain HTTP on 127.0.0.1 (the controller gets a kubeconfig pointing there) and
//! forwards every request over TLS with the credentials the controller would have used, through
//! a kube client. Rules pick requests by verb, path and whether they are watches, and answer a
//! given number of them with a fault instead: a server error, 429 with Retry-After, a hang, an
//! answer lost after the request took effect, a watch cut after its first event, a watch that
//! says 410 Gone. Every request is logged, so a test can show that its fault really happened.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body as AxumBody;
use futures::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// What the proxy does instead of forwarding.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answers with this status code and a Kubernetes Status body.
    Status(u16),
    /// Answers 429 Too Many Requests with `Retry-After: <seconds>`.
    TooManyRequests { retry_after_secs: u64 },
    /// Never answers and never forwards: a server or load balancer that accepted the
    /// connection and hangs.
    Hang,
    /// Forwards the request, so that it takes effect, then never answers: the answer is lost.
    LoseAnswer,
    /// Forwards a watch and cuts the connection after the first chunk of events.
    DropWatch,
    /// Answers a watch with an ERROR event `410 Expired`, which makes the client relist.
    Gone,
}

/// Which requests a rule applies to.
#[derive(Debug, Clone)]
pub struct Match {
    pub method: &'static str,
    /// A substring of the path (without the query).
    pub path: String,
    /// Some(true): only watches; Some(false): only requests that are not watches.
    pub watch: Option<bool>,
}

impl Match {
    pub fn new(method: &'static str, path: impl Into<String>) -> Self {
        Match {
            method,
            path: path.into(),
            watch: None,
        }
    }

    /// Watch requests (`GET ...?watch=true`) on paths containing `path`.
    pub fn watch(path: impl Into<String>) -> Self {
        Match {
            watch: Some(true),
            ..Match::new("GET", path)
        }
    }

    fn matches(&self, method: &str, path: &str, watch: bool) -> bool {
        self.method == method && path.contains(&self.path) && self.watch.is_none_or(|w| w == watch)
    }
}

struct Rule {
    when: Match,
    fault: Fault,
    /// How many more matching requests get the fault.
    remaining: usize,
}

/// One request the proxy saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub watch: bool,
    /// The fault it got, if any.
    pub fault: Option<String>,
    pub at: Instant,
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    seen: Vec<Seen>,
}

/// The proxy; stops when dropped.
pub struct FaultProxy {
    pub port: u16,
    state: Arc<Mutex<State>>,
    kubeconfig: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy to the local control plane with the controllers' credentials
    /// (`SYNCSEQ_CONTROLLER_KUBECONFIG`, else admin), and writes a kubeconfig that points at it.
    pub async fn start(name: &str) -> Self {
        let upstream_path = std::env::var_os("SYNCSEQ_CONTROLLER_KUBECONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(super::kubeconfig_path);
        let kubeconfig = Kubeconfig::read_from(&upstream_path).expect("controller kubeconfig");
        let mut config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .expect("kubeconfig");
        // The proxy is transparent: the controller's client decides what to retry.
        config.default_retry = false;
        let upstream = kube::Client::try_from(config).expect("upstream client");

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let app = axum::Router::new().fallback({
            let state = state.clone();
            move |req: Request<AxumBody>| handle(state.clone(), upstream.clone(), req)
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });

        let dir = super::repo_root().join(".cluster/logs");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("proxy-{name}.kubeconfig"));
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\n\
                 clusters: [{{name: proxy, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n\
                 users: [{{name: proxy, user: {{}}}}]\n\
                 contexts: [{{name: proxy, context: {{cluster: proxy, user: proxy}}}}]\n\
                 current-context: proxy\n"
            ),
        )
        .unwrap();
        FaultProxy {
            port,
            state,
            kubeconfig: path,
            task,
        }
    }

    /// The kubeconfig a controller uses to go through the proxy.
    pub fn kubeconfig(&self) -> &std::path::Path {
        &self.kubeconfig
    }

    /// Answers the next `times` requests that match with `fault`.
    pub fn inject(&self, when: Match, fault: Fault, times: usize) {
        lock(&self.state).rules.push(Rule {
            when,
            fault,
            remaining: times,
        });
    }

    /// Every request so far, oldest first.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.state).seen.clone()
    }

    /// The requests that got a fault.
    pub fn faulted(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.fault.is_some())
            .collect()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn is_watch(query: Option<&str>) -> bool {
    query.is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"))
}

async fn handle(
    state: Arc<Mutex<State>>,
    upstream: kube::Client,
    req: Request<AxumBody>,
) -> Response<AxumBody> {
    let (parts, body) = req.into_parts();
    let method = parts.method.as_str().to_string();
    let path = parts.uri.path().to_string();
    let watch = is_watch(parts.uri.query());
    let fault = {
        let mut st = lock(&state);
        let fault = st
            .rules
            .iter_mut()
            .find(|r| r.remaining > 0 && r.when.matches(&method, &path, watch))
            .map(|r| {
                r.remaining -= 1;
                r.fault.clone()
            });
        st.seen.push(Seen {
            method: method.clone(),
            uri: parts
                .uri
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            watch,
            fault: fault.as_ref().map(|f| format!("{f:?}")),
            at: Instant::now(),
        });
        fault
    };
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut forward = Request::builder().method(parts.method.clone()).uri(
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/"),
    );
    for (name, value) in &parts.headers {
        if !matches!(
            name.as_str(),
            "host" | "authorization" | "connection" | "content-length" | "transfer-encoding"
        ) {
            forward = forward.header(name, value);
        }
    }
    let forward = forward
        .body(kube::client::Body::from(body.to_vec()))
        .expect("request");

    match fault {
        None => relay(upstream.send(forward).await),
        Some(Fault::Status(code)) => status(code, "injected by the test proxy", None),
        Some(Fault::TooManyRequests { retry_after_secs }) => {
            status(429, "injected by the test proxy", Some(retry_after_secs))
        }
        Some(Fault::Hang) => std::future::pending().await,
        Some(Fault::LoseAnswer) => {
            let _ = upstream.send(forward).await;
            std::future::pending().await
        }
        Some(Fault::DropWatch) => match upstream.send(forward).await {
            Ok(resp) => {
                let (parts, body) = resp.into_parts();
                let cut = body
                    .into_data_stream()
                    .take(1)
                    .map(|r| r.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>))
                    .chain(futures::stream::once(async {
                        Err("watch cut by the test proxy".into())
                    }));
                Response::from_parts(strip(parts), AxumBody::from_stream(cut))
            }
            Err(e) => status(502, &e.to_string(), None),
        },
        Some(Fault::Gone) => {
            let event = serde_json::json!({
                "type": "ERROR",
                "object": {
                    "kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Failure", "reason": "Expired", "code": 410,
                    "message": "too old resource version (injected by the test proxy)",
                },
            });
            Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(AxumBody::from(format!("{event}\n")))
                .unwrap()
        }
    }
}

fn relay(result: Result<Response<kube::client::Body>, kube::Error>) -> Response<AxumBody> {
    match result {
        Ok(resp) => {
            let (parts, body) = resp.into_parts();
            Response::from_parts(strip(parts), AxumBody::new(body))
        }
        Err(e) => status(502, &e.to_string(), None),
    }
}

/// Drops the hop-by-hop headers; the proxy's own server frames the body.
fn strip(mut parts: http::response::Parts) -> http::response::Parts {
    for h in ["connection", "transfer-encoding", "keep-alive"] {
        parts.headers.remove(h);
    }
    parts
}

fn status(code: u16, message: &str, retry_after: Option<u64>) -> Response<AxumBody> {
    let code = StatusCode::from_u16(code).expect("status code");
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message,
        "reason": code.canonical_reason().unwrap_or("Error"), "code": code.as_u16(),
    });
    let mut resp = Response::builder()
        .status(code)
        .header("content-type", "application/json");
    if let Some(secs) = retry_after {
        resp = resp.header("retry-after", secs.to_string());
    }
    resp.body(AxumBody::from(body.to_string())).unwrap()
}
