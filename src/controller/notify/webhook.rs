//! One delivery attempt to a webhook: the URL from its Secret, the egress policy, the POST
//! and how its answer is classified (delivered, retried, or final). The URL is a credential
//! (a Slack webhook URL is its own token): error texts that could carry it are scrubbed, and
//! a receiver's answer is reported by its status code alone.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use super::super::egress::{CheckedResolver, EgressPolicy, EgressRefused, refusal};
use crate::api::SecretKeyRef;

pub(super) type Http = HttpClient<HttpsConnector<HttpConnector<CheckedResolver>>, Full<Bytes>>;

/// An HTTPS (rustls, platform verifier: the OS trust store) or plain-HTTP client that connects
/// only where the egress policy allows.
pub(super) fn http_client(egress: Arc<EgressPolicy>) -> Http {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())
        .and_then(|b| b.with_platform_verifier().map_err(|e| e.to_string()))
        .map(|b| b.with_no_client_auth())
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "no TLS trust store for alert webhooks; HTTPS deliveries will fail");
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        });
    let mut http = HttpConnector::new_with_resolver(CheckedResolver { policy: egress });
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    HttpClient::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// Why one attempt failed.
#[derive(Debug)]
pub(super) struct AttemptError {
    /// CamelCase, for the condition's reason.
    pub reason: &'static str,
    pub message: String,
    pub retry: bool,
}

impl AttemptError {
    pub(super) fn retry(reason: &'static str, message: String) -> Self {
        AttemptError {
            reason,
            message,
            retry: true,
        }
    }
}

/// One attempt: reads the URL from the Secret, checks it against the egress policy and POSTs
/// the body. Error texts are scrubbed of the URL.
#[allow(clippy::too_many_arguments)]
pub(super) async fn attempt(
    client: &Client,
    http: &Http,
    egress: &EgressPolicy,
    namespace: &str,
    secret: &SecretKeyRef,
    idempotency_key: &str,
    body: Bytes,
    timeout: Duration,
) -> Result<(), AttemptError> {
    let url = webhook_url(client, namespace, secret).await?;
    egress.check_literal(&url).map_err(refused)?;
    post(http, &url, idempotency_key, body, timeout)
        .await
        .map_err(|mut e| {
            e.message = scrub(&e.message, &url.to_string());
            e
        })
}

async fn webhook_url(
    client: &Client,
    namespace: &str,
    r: &SecretKeyRef,
) -> Result<http::Uri, AttemptError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = match secrets.get_opt(&r.name).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Err(AttemptError::retry(
                "SecretNotFound",
                format!("Secret {} not found", r.name),
            ));
        }
        Err(e) => {
            return Err(AttemptError::retry(
                "SecretUnreadable",
                format!("reading Secret {}: {e}", r.name),
            ));
        }
    };
    let Some(value) = secret.data.as_ref().and_then(|d| d.get(&r.key)) else {
        return Err(AttemptError::retry(
            "SecretKeyNotFound",
            format!("Secret {} has no key {}", r.name, r.key),
        ));
    };
    parse_url(&value.0).ok_or_else(|| {
        AttemptError::retry(
            "InvalidURL",
            format!(
                "key {} of Secret {} does not hold an http(s) URL",
                r.key, r.name
            ),
        )
    })
}

/// The URL in a Secret value: UTF-8, surrounding whitespace ignored, http or https with a host.
fn parse_url(raw: &[u8]) -> Option<http::Uri> {
    let text = std::str::from_utf8(raw).ok()?.trim();
    let uri: http::Uri = text.parse().ok()?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    (scheme_ok && uri.host().is_some_and(|h| !h.is_empty())).then_some(uri)
}

async fn post(
    http: &Http,
    url: &http::Uri,
    idempotency_key: &str,
    body: Bytes,
    timeout: Duration,
) -> Result<(), AttemptError> {
    let request = http::Request::post(url.clone())
        .header(http::header::CONTENT_TYPE, "application/json")
        // The same on every attempt, across restarts: receivers can de-duplicate on it.
        .header("Idempotency-Key", idempotency_key)
        .header(
            http::header::USER_AGENT,
            concat!("syncseq/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(body))
        .map_err(|e| AttemptError::retry("DeliveryFailed", e.to_string()))?;
    let exchange = async {
        let response = http.request(request).await.map_err(|e| match refusal(&e) {
            Some(r) => refused(r),
            None => AttemptError::retry("DeliveryFailed", error_chain(&e)),
        })?;
        let status = response.status();
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
            reason: "DeliveryFailed",
            message: if retry {
                message
            } else {
                format!("{message} (not retried)")
            },
            retry,
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(AttemptError::retry(
                "DeliveryFailed",
                format!("no answer within {}s", timeout.as_secs()),
            ))
        })
}

/// A connection the egress policy refused: final, since retrying cannot change the answer.
fn refused(r: EgressRefused) -> AttemptError {
    AttemptError {
        reason: "EgressRefused",
        message: format!("{r} (not retried)"),
        retry: false,
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
                    "HTTP/1.1 {status}\r\ncontent-length: 13\r\nconnection: close\r\n\r\nno_such_token"
                );
                sock.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        let http = http_client(Arc::new(EgressPolicy::parse(&["127.0.0.1"]).unwrap()));
        let url: http::Uri = format!("http://{addr}/hook/T0/SECRET").parse().unwrap();
        let t = Duration::from_secs(5);
        let body = Bytes::from_static(b"{}");
        let send = |body| post(&http, &url, "k1", body, t);
        assert!(send(body.clone()).await.is_ok());
        let head = heads.recv().await.unwrap().to_ascii_lowercase();
        assert!(head.contains("idempotency-key: k1"), "{head}");
        let e = send(body.clone()).await.unwrap_err();
        assert!(e.retry);
        assert_eq!(
            e.message, "HTTP 503 Service Unavailable",
            "the body is not quoted"
        );
        let e = send(body.clone()).await.unwrap_err();
        assert!(!e.retry);
        assert!(e.message.starts_with("HTTP 404 Not Found"), "{}", e.message);
        // Nothing listens any more: a connection error, scrubbed.
        let e = send(body).await.unwrap_err();
        assert!(e.retry);
        let scrubbed = scrub(&e.message, &url.to_string());
        assert!(!scrubbed.contains("SECRET"), "{scrubbed}");
    }
}
