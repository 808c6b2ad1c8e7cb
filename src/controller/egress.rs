//! Where alert webhooks may connect. A webhook URL comes from a tenant's Secret, so by default
//! the controller refuses the addresses that would let a tenant reach what only the
//! controller's own machine can: loopback, link-local (cloud metadata at 169.254.169.254 among
//! them) and unspecified addresses. The check is made on the addresses a name resolves to, at
//! connect time, so a name that resolves (or rebinds) to one of them gains nothing; IP
//! literals are checked before the request. Operators allow more with `--webhook-allow`
//! (hosts or CIDRs).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;
use ipnet::IpNet;

/// What alert webhooks may reach besides the default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EgressPolicy {
    /// Networks allowed even when they are of a refused kind.
    networks: Vec<IpNet>,
    /// Host names (lower case) allowed whatever they resolve to.
    hosts: Vec<String>,
}

/// A webhook connection the policy refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the webhook host resolves to {address}, a {kind} address, which alert webhooks may not reach (an operator can allow it with --webhook-allow)"
)]
pub(crate) struct EgressRefused {
    pub address: IpAddr,
    pub kind: &'static str,
}

impl EgressPolicy {
    /// Parses allow entries: a CIDR (`10.0.0.0/8`), an address (`127.0.0.1`) or a host name.
    /// Empty entries are ignored (an empty environment variable allows nothing more).
    pub(crate) fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let mut policy = EgressPolicy::default();
        for entry in entries.iter().map(|e| e.as_ref().trim()) {
            if entry.is_empty() {
                continue;
            }
            if let Ok(net) = entry.parse::<IpNet>() {
                policy.networks.push(net);
            } else if let Ok(ip) = entry.parse::<IpAddr>() {
                policy.networks.push(IpNet::from(ip));
            } else if is_host_name(entry) {
                policy.hosts.push(entry.to_ascii_lowercase());
            } else {
                return Err(format!(
                    "--webhook-allow {entry:?}: not a CIDR, an IP address or a host name"
                ));
            }
        }
        Ok(policy)
    }

    /// Whether a host name is allowed whatever it resolves to.
    fn allows_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.hosts.iter().any(|h| h.trim_end_matches('.') == host)
    }

    /// Checks one address.
    pub(crate) fn check(&self, address: IpAddr) -> Result<(), EgressRefused> {
        let address = address.to_canonical();
        match refused_kind(address) {
            Some(kind) if !self.networks.iter().any(|n| n.contains(&address)) => {
                Err(EgressRefused { address, kind })
            }
            _ => Ok(()),
        }
    }

    /// Checks a URL's host when it is an IP literal (names are checked when resolved).
    pub(crate) fn check_literal(&self, url: &http::Uri) -> Result<(), EgressRefused> {
        let host = url.host().unwrap_or_default();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match bare.parse::<IpAddr>() {
            Ok(ip) => self.check(ip),
            Err(_) => Ok(()),
        }
    }
}

fn is_host_name(s: &str) -> bool {
    s.len() <= 253
        && s.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The kind of address webhooks may not reach by default, if `address` is one.
fn refused_kind(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(v4) if v4.is_loopback() => Some("loopback"),
        IpAddr::V4(v4) if v4.is_link_local() => Some("link-local"),
        IpAddr::V4(v4) if v4.is_unspecified() || v4.octets()[0] == 0 => Some("unspecified"),
        IpAddr::V6(v6) if v6.is_loopback() => Some("loopback"),
        IpAddr::V6(v6) if v6.is_unicast_link_local() => Some("link-local"),
        IpAddr::V6(v6) if v6.is_unspecified() => Some("unspecified"),
        _ => None,
    }
}

/// The DNS resolver of the webhook client: the system resolver, keeping only the addresses the
/// policy allows, and failing with [`EgressRefused`] when none is left.
#[derive(Clone)]
pub(super) struct CheckedResolver {
    pub policy: Arc<EgressPolicy>,
}

impl tower::Service<Name> for CheckedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if policy.allows_host(&host) {
                return Ok(found.into_iter());
            }
            let mut refused = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match policy.check(a.ip()) {
                    Ok(()) => true,
                    Err(e) => {
                        refused.get_or_insert(e);
                        false
                    }
                })
                .collect();
            match (allowed.is_empty(), refused) {
                (true, Some(e)) => {
                    Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, e))
                }
                _ => Ok(allowed.into_iter()),
            }
        })
    }
}

/// The refusal in an error's chain, if that is what it is.
pub(super) fn refusal(e: &(dyn std::error::Error + 'static)) -> Option<EgressRefused> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(r) = err.downcast_ref::<EgressRefused>() {
            return Some(r.clone());
        }
        // io::Error's `source` skips the error it wraps; `get_ref` reaches it.
        if let Some(r) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<EgressRefused>())
        {
            return Some(r.clone());
        }
        next = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use tower::{Service, ServiceExt};

    use super::*;

    fn refused(policy: &EgressPolicy, ip: &str) -> Option<&'static str> {
        policy.check(ip.parse().unwrap()).err().map(|e| e.kind)
    }

    #[test]
    fn loopback_link_local_and_unspecified_are_refused_by_default() {
        let p = EgressPolicy::default();
        for (ip, kind) in [
            ("127.0.0.1", "loopback"),
            ("127.3.4.5", "loopback"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("169.254.169.254", "link-local"),
            ("fe80::1", "link-local"),
            ("::ffff:169.254.169.254", "link-local"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("::", "unspecified"),
        ] {
            assert_eq!(refused(&p, ip), Some(kind), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "10.96.0.10",
            "2606:4700::1111",
            "192.168.1.1",
        ] {
            assert_eq!(refused(&p, ip), None, "{ip}");
        }
    }

    #[test]
    fn operators_allow_networks_and_hosts() {
        let p = EgressPolicy::parse(&["127.0.0.1/32", "fe80::/10", "Receiver.Local", ""]).unwrap();
        assert_eq!(refused(&p, "127.0.0.1"), None);
        assert_eq!(refused(&p, "127.0.0.2"), Some("loopback"));
        assert_eq!(refused(&p, "fe80::1"), None);
        assert!(p.allows_host("receiver.local."));
        let p = EgressPolicy::parse(&["169.254.169.254"]).unwrap();
        assert_eq!(refused(&p, "169.254.169.254"), None);
        let e = EgressPolicy::parse(&["not a host!"]).unwrap_err();
        assert!(e.contains("not a CIDR"), "{e}");
    }

    #[test]
    fn ip_literals_in_urls_are_checked() {
        let p = EgressPolicy::default();
        for url in [
            "http://127.0.0.1:8080/x",
            "http://[::1]/x",
            "https://169.254.169.254/latest",
        ] {
            assert!(p.check_literal(&url.parse().unwrap()).is_err(), "{url}");
        }
        assert!(
            p.check_literal(&"https://hooks.example.com/x".parse().unwrap())
                .is_ok()
        );
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused_and_the_refusal_is_found_in_the_chain() {
        let mut resolver = CheckedResolver {
            policy: Arc::new(EgressPolicy::default()),
        };
        let name: Name = "localhost".parse().unwrap();
        let err = resolver
            .ready()
            .await
            .unwrap()
            .call(name)
            .await
            .unwrap_err();
        let found = refusal(&err).expect("an egress refusal");
        assert_eq!(found.kind, "loopback");
        // Allowed by name, it resolves.
        let mut resolver = CheckedResolver {
            policy: Arc::new(EgressPolicy::parse(&["localhost"]).unwrap()),
        };
        let name: Name = "localhost".parse().unwrap();
        assert!(resolver.call(name).await.unwrap().next().is_some());
    }
}
