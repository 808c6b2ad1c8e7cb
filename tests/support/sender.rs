//! A webhook sender for receiver tests: real HTTP/1.1 requests to the controller's webhook
//! endpoint, signed as dbt Cloud, Fivetran or a generic sender signs them.
#![allow(dead_code)]

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::TestNamespace;

/// An answer of the endpoint.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub retry_after: Option<String>,
}

impl Answer {
    /// The `result` field of the JSON body ("accepted", "duplicate", "ignored", ...).
    pub fn result(&self) -> String {
        serde_json::from_str::<Value>(&self.body)
            .ok()
            .and_then(|v| v["result"].as_str().map(String::from))
            .unwrap_or_default()
    }
}

/// POSTs `body` to `http://{address}{path}` with `headers`, on a connection of its own.
pub async fn post(address: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> Answer {
    let mut sock = tokio::net::TcpStream::connect(address)
        .await
        .unwrap_or_else(|e| panic!("connect to the webhook endpoint at {address}: {e}"));
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let (mut read, mut write) = sock.split();
    // Written while the answer is read: the endpoint may answer (413) before taking it all.
    let send = async {
        let _ = write.write_all(head.as_bytes()).await;
        let _ = write.write_all(body).await;
    };
    let receive = async {
        let mut out = Vec::new();
        let _ = read.read_to_end(&mut out).await;
        out
    };
    let ((), raw) = tokio::time::timeout(Duration::from_secs(20), async {
        tokio::join!(send, receive)
    })
    .await
    .expect("the webhook endpoint answers within 20 s");
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in the answer: {text:?}"));
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let retry_after = head
        .lines()
        .find_map(|l| l.strip_prefix("retry-after: ").map(String::from));
    Answer {
        status,
        body: body.to_string(),
        retry_after,
    }
}

/// Waits until the endpoint at `address` knows the receiver at `path` (an unsigned delivery
/// gets 401, not the 503 of a replica still listing its receivers).
pub async fn wait_serving(address: &str, path: &str) {
    super::eventually(
        Duration::from_secs(30),
        "the webhook endpoint to serve the receiver",
        || async { (post(address, path, &[], b"{}").await.status == 401).then_some(()) },
    )
    .await;
}

/// Headers that sign `body` with `secret` as a sender of `kind` does.
pub fn signed(kind: &str, secret: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    let digest = syncseq::sign(secret.as_bytes(), body);
    match kind {
        "DbtCloud" => vec![("Authorization", digest)],
        "Fivetran" => vec![("X-Fivetran-Signature-256", digest.to_uppercase())],
        _ => vec![("X-Hub-Signature-256", format!("sha256={digest}"))],
    }
}

/// A dbt Cloud job webhook body, as dbt Cloud documents it.
pub fn dbt_body(event: &str, job: &str, run: &str, status: &str) -> Vec<u8> {
    let code = match status {
        "Success" => 10,
        "Cancelled" => 30,
        _ => 20,
    };
    json!({
        "accountId": 1,
        "webhooksID": "wsu_12345abcde",
        "eventId": format!("wev_{run}_{event}"),
        "timestamp": "2026-12-02T09:28:15.742843678Z",
        "eventType": event,
        "webhookName": "syncseq",
        "data": {
            "jobId": job, "jobName": "Build CRM models", "runId": run,
            "environmentId": "1234", "environmentName": "Production",
            "runStatus": status, "runStatusCode": code,
            "runStartedAt": "2026-12-02T09:28:07Z", "runFinishedAt": "2026-12-02T09:29:32Z"
        }
    })
    .to_string()
    .into_bytes()
}

/// A Fivetran webhook body.
pub fn fivetran_body(event: &str, connector: &str, sync: &str, status: &str) -> Vec<u8> {
    json!({
        "event": event,
        "created": "2026-12-02T11:38:34.386Z",
        "connector_type": "salesforce",
        "connector_id": connector,
        "connector_name": "Salesforce",
        "sync_id": sync,
        "destination_group_id": "deck_enjoy",
        "data": {"status": status}
    })
    .to_string()
    .into_bytes()
}

/// A Secret holding a receiver's signing secret under `token`.
pub async fn create_token_secret(ns: &TestNamespace, name: &str, token: &str) {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name},
        // As `kubectl create secret --from-file` makes it: with a trailing newline.
        "stringData": {"token": format!("{token}\n")},
    }))
    .unwrap();
    ns.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
}

/// A WebhookReceiver manifest; `filter` is spliced under `spec:` (indented two spaces).
pub fn receiver_yaml(name: &str, kind: &str, secret: &str, filter: &str) -> String {
    format!(
        "apiVersion: syncseq.dev/v1alpha1\nkind: WebhookReceiver\nmetadata:\n  name: {name}\nspec:\n  type: {kind}\n  secretRef: {{name: {secret}, key: token}}\n{filter}"
    )
}
