//! A webhook receiver for alert tests: an HTTP/1.1 server on 127.0.0.1 (plain, or HTTPS for
//! `localhost`) that records every request and answers as the test says (failures, an outage,
//! a delay).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::TestNamespace;

/// One request the receiver got, and how it answered.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// The request line and headers, as sent.
    pub head: String,
    pub content_type: Option<String>,
    pub idempotency_key: Option<String>,
    pub body: Vec<u8>,
    pub status: u16,
    pub answered_at: Instant,
}

impl Received {
    /// A request header's value (the first, if repeated).
    pub fn header(&self, name: &str) -> Option<String> {
        header(&self.head, name)
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body of {} is not JSON ({e}): {}",
                self.path,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

#[derive(Default)]
struct ReceiverState {
    requests: Vec<Received>,
    /// Answer 500 to this many requests, then 200.
    fail_next: usize,
    /// Answer 503 until then (an outage).
    down_until: Option<Instant>,
    /// Wait this long before answering.
    delay: Duration,
}

/// A plain HTTP/1.1 server on 127.0.0.1 that records every request.
pub struct Receiver {
    pub port: u16,
    state: Arc<Mutex<ReceiverState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(ReceiverState::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(serve(sock, shared.clone()));
            }
        });
        Receiver { port, state, task }
    }

    /// The same receiver over HTTPS, with `ca`'s certificate for `localhost`.
    pub async fn start_tls(ca: &super::tls::TestCa) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(ReceiverState::default()));
        let shared = state.clone();
        let acceptor = ca.acceptor();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, shared) = (acceptor.clone(), shared.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(sock).await {
                        serve(tls, shared).await;
                    }
                });
            }
        });
        Receiver { port, state, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The URL of a receiver started with [`Receiver::start_tls`].
    pub fn https_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    pub fn fail_next(&self, n: usize) {
        self.state.lock().unwrap().fail_next = n;
    }

    pub fn down_for(&self, d: Duration) {
        self.state.lock().unwrap().down_until = Some(Instant::now() + d);
    }

    pub fn delay(&self, d: Duration) {
        self.state.lock().unwrap().delay = d;
    }

    pub fn requests(&self, prefix: &str) -> Vec<Received> {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|r| r.path.starts_with(prefix))
            .cloned()
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A tarpit: accepts connections, reads what is sent, never answers. Counts the connections
/// open at once (a client that gives up closes its connection).
pub struct Tarpit {
    pub port: u16,
    open: Arc<Mutex<TarpitCounts>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct TarpitCounts {
    open: usize,
    most_open: usize,
    first_accepted: Option<Instant>,
}

impl Tarpit {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(Mutex::new(TarpitCounts::default()));
        let counts = open.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    continue;
                };
                let counts = counts.clone();
                tokio::spawn(async move {
                    {
                        let mut c = counts.lock().unwrap();
                        c.open += 1;
                        c.most_open = c.most_open.max(c.open);
                        c.first_accepted.get_or_insert_with(Instant::now);
                    }
                    let mut sink = [0u8; 4096];
                    while matches!(sock.read(&mut sink).await, Ok(n) if n > 0) {}
                    counts.lock().unwrap().open -= 1;
                });
            }
        });
        Tarpit { port, open, task }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap().open
    }

    /// The most connections that were open at once.
    pub fn most_open(&self) -> usize {
        self.open.lock().unwrap().most_open
    }

    /// When the first connection came.
    pub fn first_accepted(&self) -> Option<Instant> {
        self.open.lock().unwrap().first_accepted
    }
}

impl Drop for Tarpit {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut sock: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    state: Arc<Mutex<ReceiverState>>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let (head, body_start, length) = loop {
        let Ok(n) = sock.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).to_string();
            let length = header(&head, "content-length")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            break (head, i + 4, length);
        }
    };
    while buf.len() < body_start + length {
        let Ok(n) = sock.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[body_start..(body_start + length).min(buf.len())].to_vec();
    let path = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("")
        .to_string();
    let (status, delay) = {
        let mut s = state.lock().unwrap();
        let status = if s.down_until.is_some_and(|t| Instant::now() < t) {
            503
        } else if s.fail_next > 0 {
            s.fail_next -= 1;
            500
        } else {
            200
        };
        (status, s.delay)
    };
    tokio::time::sleep(delay).await;
    let text = if status == 200 { "ok" } else { "oops" };
    let answer = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
        if status == 200 {
            "OK"
        } else {
            "Internal Server Error"
        },
        text.len()
    );
    let _ = sock.write_all(answer.as_bytes()).await;
    let _ = sock.shutdown().await;
    state.lock().unwrap().requests.push(Received {
        path,
        head: head.clone(),
        content_type: header(&head, "content-type"),
        idempotency_key: header(&head, "idempotency-key"),
        body,
        status,
        answered_at: Instant::now(),
    });
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// A Secret holding a webhook URL under the key `url`.
pub async fn create_secret(ns: &TestNamespace, name: &str, url: &str) {
    create_secret_with(ns, name, &[("url", url)]).await;
}

/// A Secret holding these keys and values.
pub async fn create_secret_with(ns: &TestNamespace, name: &str, data: &[(&str, &str)]) {
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name},
        "stringData": data,
    }))
    .unwrap();
    ns.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
}
