//! HMAC-SHA256 signatures of message bodies, keyed by a shared secret: what the webhook
//! receiver checks on a delivery and what an alert webhook puts on the bodies it sends. Pure.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The hex HMAC-SHA256 of `body` keyed by `secret`, as the senders compute it: the tests'
/// signer, and the documented way to sign a generic delivery.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    hex::encode(mac(secret, body).finalize().into_bytes())
}

/// Whether `digest` is the HMAC-SHA256 of `body` keyed by `secret`, compared in constant
/// time (`Mac::verify_slice`) so that a sender learns nothing from how long a refusal takes.
pub(crate) fn matches(secret: &[u8], body: &[u8], digest: &[u8]) -> bool {
    mac(secret, body).verify_slice(digest).is_ok()
}

fn mac(secret: &[u8], body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)
        .expect("HMAC takes keys of any length (RFC 2104 hashes long ones)");
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
    const RFC4231_2: &str = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";

    #[test]
    fn the_digest_is_standard_hmac_sha256() {
        let data = b"what do ya want for nothing?";
        assert_eq!(sign(b"Jefe", data), RFC4231_2);
        let digest = hex::decode(RFC4231_2).unwrap();
        assert!(matches(b"Jefe", data, &digest));
        assert!(!matches(b"other", data, &digest));
        assert!(!matches(b"Jefe", b"changed", &digest));
        // A digest of the wrong length is a mismatch, not a panic.
        assert!(!matches(b"Jefe", data, &digest[..4]));
    }
}
