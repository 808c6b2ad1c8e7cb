//! Checking that a delivery was signed with the receiver's secret. Pure.
//!
//! Every sender signs the raw body with HMAC-SHA256 keyed by the shared secret, and sends the
//! digest as hex in a header of its own:
//! - dbt Cloud: `Authorization: <hex>` (docs.getdbt.com, "Webhooks for your jobs");
//! - Fivetran: `X-Fivetran-Signature-256: <HEX>` (upper case);
//! - generic: `X-Hub-Signature-256: sha256=<hex>`, as GitHub sends it.
//!
//! The digest is checked by [`crate::signing`] (in constant time), and hex is read in either
//! case.

use http::HeaderMap;

use crate::api::ReceiverType;
use crate::signing;

/// Why a signature was refused (answered with 401).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The header is absent.
    Missing(&'static str),
    /// The header is not hex (or lacks `sha256=`).
    Malformed(&'static str),
    /// The digest does not match: another secret, or a changed body.
    Mismatch,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Missing(h) => write!(f, "no {h} header"),
            Refused::Malformed(h) => write!(f, "the {h} header is not a hex HMAC-SHA256 digest"),
            Refused::Mismatch => f.write_str("the signature does not match the body"),
        }
    }
}

/// The header each sender signs in.
pub(crate) fn header(kind: ReceiverType) -> &'static str {
    match kind {
        ReceiverType::DbtCloud => "authorization",
        ReceiverType::Fivetran => "x-fivetran-signature-256",
        ReceiverType::Generic => "x-hub-signature-256",
    }
}

/// Checks the signature of `body` in `headers` against `secret`.
pub(crate) fn verify(
    kind: ReceiverType,
    headers: &HeaderMap,
    body: &[u8],
    secret: &[u8],
) -> Result<(), Refused> {
    let name = header(kind);
    let value = headers
        .get(name)
        .ok_or(Refused::Missing(name))?
        .to_str()
        .map_err(|_| Refused::Malformed(name))?
        .trim();
    let digest = match kind {
        ReceiverType::Generic => value
            .strip_prefix("sha256=")
            .ok_or(Refused::Malformed(name))?,
        ReceiverType::DbtCloud | ReceiverType::Fivetran => value,
    };
    let expected = hex::decode(digest).map_err(|_| Refused::Malformed(name))?;
    if signing::matches(secret, body, &expected) {
        Ok(())
    } else {
        Err(Refused::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, value.parse().unwrap());
        h
    }

    /// RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
    const RFC4231_2: &str = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";

    #[test]
    fn each_sender_is_read_from_its_own_header() {
        let body = b"what do ya want for nothing?";
        let cases = [
            (
                ReceiverType::DbtCloud,
                "authorization",
                RFC4231_2.to_string(),
            ),
            (
                ReceiverType::Fivetran,
                "x-fivetran-signature-256",
                RFC4231_2.to_uppercase(),
            ),
            (
                ReceiverType::Generic,
                "x-hub-signature-256",
                format!("sha256={RFC4231_2}"),
            ),
        ];
        for (kind, name, value) in cases {
            assert_eq!(verify(kind, &headers(name, &value), body, b"Jefe"), Ok(()));
            assert_eq!(
                verify(kind, &headers(name, &value), body, b"other"),
                Err(Refused::Mismatch),
                "{kind:?} with another secret"
            );
            assert_eq!(
                verify(kind, &headers(name, &value), b"changed", b"Jefe"),
                Err(Refused::Mismatch),
                "{kind:?} with another body"
            );
            assert_eq!(
                verify(kind, &HeaderMap::new(), body, b"Jefe"),
                Err(Refused::Missing(name))
            );
        }
    }

    #[test]
    fn malformed_signatures_are_refused_without_panicking() {
        let body = b"{}";
        for value in [
            "",
            "zz",
            "sha256=",
            "sha256=abc",
            RFC4231_2,
            "sha256=\u{7f}",
        ] {
            let Ok(v) = value.parse() else { continue };
            let mut h = HeaderMap::new();
            h.insert("x-hub-signature-256", v);
            assert!(
                verify(ReceiverType::Generic, &h, body, b"Jefe").is_err(),
                "{value:?}"
            );
        }
        // A digest of the wrong length is a mismatch, not a panic.
        let h = headers("authorization", "abcd");
        assert_eq!(
            verify(ReceiverType::DbtCloud, &h, body, b"k"),
            Err(Refused::Mismatch)
        );
    }
}
