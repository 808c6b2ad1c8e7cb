//! One delivery attempt to a webhook: the URL from its Secret, the egress policy, the POST
//! and how its answer is classified (delivered, retried, or final). The URL is a credential
//! (a Slack webhook URL is its own token): error texts that could carry it are scrubbed, and
//! a receiver's answer is reported by its status code alone.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use serde_json::Value;

use super::super::egress::{EgressPolicy, EgressRefused, refusal};
use super::connect::Http;
use crate::api::{SecretKeyRef, Webhook};
use crate::engine::reasons;

/// Why one attempt failed.
#[derive(Debug)]
pub(super) struct AttemptError {
    /// CamelCase, for the condition's reason.
    pub reason: &'static str,
    pub message: String,
    pub retry: bool,
    /// How long the receiver asked to be left alone (`Retry-After` on an answer that is
    /// retried: 408, 429, 5xx).
    pub retry_after: Option<Duration>,
}

impl AttemptError {
    pub(super) fn retry(reason: &'static str, message: String) -> Self {
        AttemptError {
            reason,
            message,
            retry: true,
            retry_after: None,
        }
    }
}

/// One attempt: reads the URL (and the routing key and signing secret the webhook names) from
/// their Secrets, checks the URL against the egress policy and POSTs the body. Error texts
/// are scrubbed of the URL.
#[allow(clippy::too_many_arguments)]
pub(super) async fn attempt(
    client: &Client,
    http: &Http,
    egress: &EgressPolicy,
    namespace: &str,
    webhook: &Webhook,
    idempotency_key: &str,
    body: &Value,
    timeout: Duration,
) -> Result<(), AttemptError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let raw = secret_value(&secrets, &webhook.url_secret_ref).await?;
    let url = parse_url(&raw).ok_or_else(|| {
        AttemptError::retry(
            reasons::INVALID_URL,
            format!(
                "key {} of Secret {} does not hold an http(s) URL",
                webhook.url_secret_ref.key, webhook.url_secret_ref.name
            ),
        )
    })?;
    egress.check_literal(&url).map_err(refused)?;
    let mut body = body.clone();
    if let Some(r) = &webhook.routing_key_secret_ref {
        let key = secret_value(&secrets, r).await?;
        let key = std::str::from_utf8(&key).map(str::trim).map_err(|_| {
            AttemptError::retry(
                reasons::INVALID_ROUTING_KEY,
                format!("key {} of Secret {} is not UTF-8", r.key, r.name),
            )
        })?;
        body["routing_key"] = Value::String(key.to_string());
    }
    let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
    let mut headers = vec![];
    if let Some(r) = &webhook.signing_secret_ref {
        let secret = secret_value(&secrets, r).await?;
        let now = jiff::Timestamp::now().as_second();
        headers.extend(signature_headers(&secret, now, &body));
    }
    post(http, &url, idempotency_key, &headers, body, timeout)
        .await
        .map_err(|mut e| {
            e.message = scrub(&e.message, &url.to_string());
            e
        })
}

/// The headers that sign a delivery made at `now` (unix seconds): the HMAC-SHA256 of
/// `<now>.<body>`, keyed by the shared secret. The timestamp is signed too, so a receiver
/// that refuses old timestamps refuses replays.
fn signature_headers(secret: &[u8], now: i64, body: &[u8]) -> [(&'static str, String); 2] {
    let mut signed = format!("{now}.").into_bytes();
    signed.extend_from_slice(body);
    [
        ("X-Syncseq-Timestamp", now.to_string()),
        (
            "X-Syncseq-Signature",
            format!("sha256={}", crate::signing::sign(secret, &signed)),
        ),
    ]
}

/// The value of one key of a Secret in the sequence's namespace.
async fn secret_value(secrets: &Api<Secret>, r: &SecretKeyRef) -> Result<Vec<u8>, AttemptError> {
    let secret = match secrets.get_opt(&r.name).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Err(AttemptError::retry(
                reasons::SECRET_NOT_FOUND,
                format!("Secret {} not found", r.name),
            ));
        }
        Err(e) => {
            return Err(AttemptError::retry(
                reasons::SECRET_UNREADABLE,
                format!("reading Secret {}: {e}", r.name),
            ));
        }
    };
    match secret.data.and_then(|mut d| d.remove(&r.key)) {
        Some(value) => Ok(value.0),
        None => Err(AttemptError::retry(
            reasons::SECRET_KEY_NOT_FOUND,
            format!("Secret {} has no key {}", r.name, r.key),
        )),
    }
}

/// The URL in a Secret value: UTF-8, surrounding whitespace ignored, http or https with a host.
fn parse_url(raw: &[u8]) -> Option<http::Uri> {
    let text = std::str::from_utf8(raw).ok()?.trim();
    let uri: http::Uri = text.parse().ok()?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    (scheme_ok && uri.host().is_some_and(|h| !h.is_empty())).then_some(uri)
}

/// The longest `Retry-After` honoured: a receiver cannot park a notification for longer.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(3600);

/// `Retry-After` as seconds or an HTTP date (RFC 9110), relative to `now`; a date in the past
/// is no wait, anything unreadable is ignored.
fn retry_after(value: &http::HeaderValue, now: std::time::SystemTime) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    let wait = match text.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => httpdate::parse_http_date(text)
            .ok()?
            .duration_since(now)
            .unwrap_or_default(),
    };
    Some(wait.min(RETRY_AFTER_MAX))
}

async fn post(
    http: &Http,
    url: &http::Uri,
    idempotency_key: &str,
    headers: &[(&'static str, String)],
    body: Bytes,
    timeout: Duration,
) -> Result<(), AttemptError> {
    let mut request = http::Request::post(url.clone())
        .header(http::header::CONTENT_TYPE, "application/json")
        // The same on every attempt, across restarts: receivers can de-duplicate on it.
        .header("Idempotency-Key", idempotency_key)
        .header(
            http::header::USER_AGENT,
            concat!("syncseq/", env!("CARGO_PKG_VERSION")),
        );
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let request = request
        .body(Full::new(body))
        .map_err(|e| AttemptError::retry(reasons::DELIVERY_FAILED, e.to_string()))?;
    let exchange = async {
        let response = http.request(request).await.map_err(|e| match refusal(&e) {
            Some(r) => refused(r),
            None => AttemptError::retry(reasons::DELIVERY_FAILED, error_chain(&e)),
        })?;
        let status = response.status();
        let wait = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| retry_after(v, std::time::SystemTime::now()));
        // Read the (small) answer so the connection can be reused. Its body is never quoted:
        // it is whatever answers at the tenant's URL chose to say, and would reach status and
        // Events; the status code is what counts.
        let _ = Limited::new(response.into_body(), 64 * 1024)
            .collect()
            .await;
        if status.is_success() {
            return Ok(());
        }
        let message = format!("HTTP {status}");
        let retry = status.is_server_error()
            || status == http::StatusCode::REQUEST_TIMEOUT
            || status == http::StatusCode::TOO_MANY_REQUESTS;
        Err(AttemptError {
            reason: reasons::DELIVERY_FAILED,
            message: match (retry, wait) {
                (true, Some(w)) => format!("{message} (retry after {}s)", w.as_secs()),
                (true, None) => message,
                (false, _) => format!("{message} (not retried)"),
            },
            retry,
            retry_after: wait.filter(|_| retry),
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(AttemptError::retry(
                reasons::DELIVERY_FAILED,
                format!("no answer within {}s", timeout.as_secs()),
            ))
        })
}

/// A connection the egress policy refused: final, since retrying cannot change the answer.
fn refused(r: EgressRefused) -> AttemptError {
    AttemptError {
        reason: reasons::EGRESS_REFUSED,
        message: format!("{r} (not retried)"),
        retry: false,
        retry_after: None,
    }
}

/// An error and its sources, as one line.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// Removes the URL from a text: the URL itself, its path and query (where webhook tokens
/// live), and anything else that looks like an http(s) URL.
pub(crate) fn scrub(text: &str, url: &str) -> String {
    let mut out = text.replace(url, "<webhook URL>");
    let trimmed = url.trim_end_matches('/');
    if !trimmed.is_empty() {
        out = out.replace(trimmed, "<webhook URL>");
    }
    if let Ok(uri) = url.parse::<http::Uri>()
        && let Some(pq) = uri.path_and_query()
        && pq.as_str().len() > 1
    {
        out = out.replace(pq.as_str(), "<path>");
        if let Some(q) = pq.query() {
            out = out.replace(q, "<query>");
        }
    }
    let mut result = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(i) = ["http://", "https://"]
        .iter()
        .filter_map(|p| rest.find(p))
        .min()
    {
        result.push_str(&rest[..i]);
        result.push_str("<URL>");
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '>' | ')' | ','))
            .unwrap_or(tail.len());
        rest = &tail[end..];
    }
    result.push_str(rest);
    result
}

#[cfg(test)]
mod tests {
    use super::super::connect::Transport;
    use super::*;

    #[test]
    fn urls_must_be_http_or_https_with_a_host() {
        assert!(parse_url(b" https://hooks.slack.com/services/T0/B0/xyz\n").is_some());
        assert!(parse_url(b"http://127.0.0.1:8080/hook").is_some());
        assert!(parse_url(b"ftp://example.com/x").is_none());
        assert!(parse_url(b"/just/a/path").is_none());
        assert!(parse_url(b"not a url").is_none());
        assert!(parse_url(&[0xff, 0xfe]).is_none());
    }

    #[test]
    fn scrub_removes_the_url_and_its_token() {
        let url = "https://hooks.slack.com/services/T000/B000/SECRET";
        let text = format!(
            "error sending request for url ({url}): connect to hooks.slack.com failed; retry /services/T000/B000/SECRET"
        );
        let s = scrub(&text, url);
        assert!(!s.contains("SECRET"), "{s}");
        assert!(!s.contains("https://"), "{s}");
        let s = scrub("see http://other.example/path?token=abc for details", url);
        assert_eq!(s, "see <URL> for details");
    }

    #[test]
    fn retry_after_is_seconds_or_a_date_and_bounded() {
        let now = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let h = |s: &str| http::HeaderValue::from_str(s).unwrap();
        assert_eq!(retry_after(&h("120"), now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(&h(" 0 "), now), Some(Duration::ZERO));
        assert_eq!(retry_after(&h("99999999999"), now), Some(RETRY_AFTER_MAX));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(retry_after(&h(&later), now), Some(Duration::from_secs(30)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(retry_after(&h(&earlier), now), Some(Duration::ZERO));
        for junk in ["soon", "-5", "1.5", "", "Wed, 99 Foo 2026"] {
            assert_eq!(retry_after(&h(junk), now), None, "{junk:?}");
        }
    }

    #[test]
    fn a_signature_covers_the_timestamp_and_the_body() {
        let [timestamp, signature] = signature_headers(b"key", 1_700_000_000, b"{}");
        assert_eq!(timestamp, ("X-Syncseq-Timestamp", "1700000000".to_string()));
        // printf '1700000000.{}' | openssl dgst -sha256 -hmac key
        assert_eq!(
            signature,
            (
                "X-Syncseq-Signature",
                "sha256=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
                    .to_string()
            )
        );
        let [_, other_time] = signature_headers(b"key", 1_700_000_001, b"{}");
        assert_ne!(
            other_time.1, signature.1,
            "a replayed body under a new time does not verify"
        );
    }

    #[tokio::test]
    async fn post_classifies_answers() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (heads_tx, mut heads) = tokio::sync::mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            for status in ["200 OK", "503 Service Unavailable", "404 Not Found"] {
                let (mut sock, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 65536];
                let mut got = 0;
                loop {
                    let n = sock.read(&mut buf[got..]).await.unwrap();
                    got += n;
                    let text = String::from_utf8_lossy(&buf[..got]);
                    if let Some(h) = text.find("\r\n\r\n") {
                        let len: usize = text[..h]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap())
                            })
                            .unwrap_or(0);
                        if got >= h + 4 + len || n == 0 {
                            let _ = heads_tx.send(text[..h].to_string());
                            break;
                        }
                    }
                }
                let answer = format!(
                    "HTTP/1.1 {status}\r\nretry-after: 7\r\ncontent-length: 13\r\nconnection: close\r\n\r\nno_such_token"
                );
                sock.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        let http = Http::new(&Transport {
            egress: EgressPolicy::parse(&["127.0.0.1"]).unwrap(),
            ..Transport::default()
        });
        let url: http::Uri = format!("http://{addr}/hook/T0/SECRET").parse().unwrap();
        let t = Duration::from_secs(5);
        let body = Bytes::from_static(b"{}");
        let send = |body| post(&http, &url, "k1", &[], body, t);
        assert!(send(body.clone()).await.is_ok());
        let head = heads.recv().await.unwrap().to_ascii_lowercase();
        assert!(head.contains("idempotency-key: k1"), "{head}");
        let e = send(body.clone()).await.unwrap_err();
        assert!(e.retry);
        assert_eq!(
            e.message, "HTTP 503 Service Unavailable (retry after 7s)",
            "the body is not quoted"
        );
        assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
        let e = send(body.clone()).await.unwrap_err();
        assert!(!e.retry);
        assert_eq!(e.retry_after, None, "nothing to wait for: not retried");
        assert!(e.message.starts_with("HTTP 404 Not Found"), "{}", e.message);
        // Nothing listens any more: a connection error, scrubbed.
        let e = send(body).await.unwrap_err();
        assert!(e.retry);
        let scrubbed = scrub(&e.message, &url.to_string());
        assert!(!scrubbed.contains("SECRET"), "{scrubbed}");
    }
}
