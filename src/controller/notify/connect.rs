//! How alert webhooks connect: TLS with the operating system's trust store plus an operator's
//! CA bundle (`--webhook-ca-bundle`), the egress policy on every resolution, and the proxy the
//! environment names (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`, as curl reads them).
//!
//! Through a proxy, an `https` webhook is a `CONNECT` tunnel and TLS runs end to end inside
//! it; an `http` webhook is sent to the proxy in absolute form. The proxy is the operator's:
//! it is connected to whatever address it has, and it resolves the webhook's host, so the
//! egress policy can check only webhook URLs written as IP addresses (`check_literal`) —
//! behind a proxy, the proxy decides where tenants' webhooks may go.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::net::TcpStream;

use super::super::egress::{CheckedResolver, EgressPolicy};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How alert webhooks connect, as the operator configured it.
#[derive(Clone, Default)]
pub(crate) struct Transport {
    /// Where webhooks may connect.
    pub egress: EgressPolicy,
    /// CA certificates trusted besides the operating system's (`--webhook-ca-bundle`).
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// The proxies, from the environment at start; `None`: no proxy.
    pub proxies: Option<Arc<Matcher>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("egress", &self.egress)
            .field("extra_roots", &self.extra_roots.len())
            .field("proxies", &self.proxies.is_some())
            .finish()
    }
}

impl Transport {
    /// The transport with the proxies of the environment.
    pub(crate) fn new(egress: EgressPolicy, extra_roots: Vec<CertificateDer<'static>>) -> Self {
        Transport {
            egress,
            extra_roots,
            proxies: Some(Arc::new(Matcher::from_env())),
        }
    }
}

/// Reads a PEM CA bundle: every certificate in it, at least one.
pub(crate) fn read_ca_bundle(
    path: &std::path::Path,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM certificate bundle: {e:?}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

/// The webhook client: the connection pool and the proxies it was built with (an `http`
/// request through an authenticating proxy carries `Proxy-Authorization`).
pub(super) struct Http {
    client: HttpClient<HttpsConnector<Connector>, Full<Bytes>>,
    proxies: Option<Arc<Matcher>>,
}

impl Http {
    pub(super) fn new(transport: &Transport) -> Self {
        let tls = tls_config(&transport.extra_roots);
        let mut direct = HttpConnector::new_with_resolver(CheckedResolver {
            policy: Arc::new(transport.egress.clone()),
        });
        direct.enforce_http(false);
        let mut to_proxy = HttpConnector::new();
        to_proxy.enforce_http(false);
        let connector = Connector {
            direct,
            to_proxy,
            proxies: transport.proxies.clone(),
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        Http {
            client: HttpClient::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
            proxies: transport.proxies.clone(),
        }
    }

    pub(super) async fn request(
        &self,
        mut request: http::Request<Full<Bytes>>,
    ) -> Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
        if request.uri().scheme_str() == Some("http")
            && let Some(auth) = self
                .proxies
                .as_ref()
                .and_then(|p| p.intercept(request.uri()))
                .and_then(|i| i.basic_auth().cloned())
        {
            request
                .headers_mut()
                .insert(http::header::PROXY_AUTHORIZATION, auth);
        }
        self.client.request(request).await
    }
}

/// rustls with the platform verifier (the OS trust store) and the extra roots.
fn tls_config(extra_roots: &[CertificateDer<'static>]) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(
        extra_roots.iter().cloned(),
        provider.clone(),
    );
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions");
    match verifier {
        Ok(v) => builder
            .dangerous()
            // Not dangerous: the platform verifier checks chains as rustls' own does.
            .with_custom_certificate_verifier(Arc::new(v))
            .with_no_client_auth(),
        Err(e) => {
            tracing::error!(error = %e, "no TLS trust store for alert webhooks; HTTPS deliveries will fail");
            builder
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        }
    }
}

/// Connects directly (through the egress check) or through the proxy the destination's
/// scheme and host call for.
#[derive(Clone)]
pub(super) struct Connector {
    direct: HttpConnector<CheckedResolver>,
    to_proxy: HttpConnector,
    proxies: Option<Arc<Matcher>>,
}

impl tower::Service<http::Uri> for Connector {
    type Response = Conn;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: http::Uri) -> Self::Future {
        let Some(proxy) = self.proxies.as_ref().and_then(|p| p.intercept(&dst)) else {
            let mut direct = self.direct.clone();
            return Box::pin(async move {
                Ok(Conn {
                    io: direct.call(dst).await?,
                    proxied: false,
                })
            });
        };
        let proxy_uri = proxy.uri().clone();
        let to_proxy = self.to_proxy.clone();
        Box::pin(async move {
            if proxy_uri.scheme_str() != Some("http") {
                return Err(format!(
                    "proxy scheme {:?} is not supported for alert webhooks (use an http:// proxy)",
                    proxy_uri.scheme_str().unwrap_or("")
                )
                .into());
            }
            if dst.scheme_str() == Some("https") {
                let mut tunnel = Tunnel::new(proxy_uri, to_proxy);
                if let Some(auth) = proxy.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                Ok(Conn {
                    io: tunnel.call(dst).await?,
                    proxied: false,
                })
            } else {
                let mut to_proxy = to_proxy;
                Ok(Conn {
                    io: to_proxy.call(proxy_uri).await?,
                    proxied: true,
                })
            }
        })
    }
}

/// A connection, marked as one to a proxy when requests on it must be in absolute form.
pub(super) struct Conn {
    io: TokioIo<TcpStream>,
    proxied: bool,
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.proxied)
    }
}

impl Read for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl Write for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A proxy that answers one request with 200 and hands over the request's head.
    async fn one_shot_proxy() -> (u16, tokio::sync::oneshot::Receiver<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && sock.read(&mut byte).await.unwrap() == 1 {
                head.push(byte[0]);
            }
            let _ = tx.send(String::from_utf8_lossy(&head).to_string());
            let _ = sock
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
        });
        (port, rx)
    }

    #[tokio::test]
    async fn an_http_webhook_goes_to_the_proxy_in_absolute_form_with_its_credentials() {
        let (port, head) = one_shot_proxy().await;
        let proxies = Matcher::builder()
            .http(format!("http://user:pw@127.0.0.1:{port}"))
            .no("direct.example")
            .build();
        // The default egress policy refuses loopback; the proxy, the operator's, is reached.
        let http = Http::new(&Transport {
            proxies: Some(Arc::new(proxies)),
            ..Transport::default()
        });
        let request = http::Request::post("http://receiver.invalid/hook?t=1")
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        let response = http.request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let head = head.await.unwrap();
        assert!(
            head.starts_with("POST http://receiver.invalid/hook?t=1 HTTP/1.1\r\n"),
            "{head}"
        );
        // base64("user:pw")
        assert!(
            head.to_ascii_lowercase()
                .contains("proxy-authorization: basic dxnlcjpwdw==\r\n"),
            "{head}"
        );
        let matcher = http.proxies.as_ref().unwrap();
        assert!(
            matcher
                .intercept(&"http://direct.example/x".parse().unwrap())
                .is_none(),
            "NO_PROXY hosts go direct"
        );
    }

    #[test]
    fn a_ca_bundle_must_hold_a_pem_certificate() {
        let dir = std::env::temp_dir().join(format!("syncseq-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = read_ca_bundle(&empty).unwrap_err();
        assert!(e.contains("no PEM certificate"), "{e}");
        let e = read_ca_bundle(&dir.join("missing.pem")).unwrap_err();
        assert!(e.contains("missing.pem"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
