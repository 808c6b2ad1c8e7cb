//! `jitterSeconds`: each object's scheduled runs start a fixed offset after the fire time, so
//! that a thousand objects on `0 * * * *` do not all start in the same second. The offset
//! comes from a hash of the object's UID: the same at every fire and on every replica (no
//! state to keep), and spread evenly over the window between objects.

use jiff::SignedDuration;
use sha2::{Digest, Sha256};

/// The most `jitterSeconds` the API accepts (also the CRD's bound): an hour, the period of the
/// most common schedule, beyond which a "delay" becomes another schedule.
const MAX_JITTER_SECONDS: i32 = 3600;

/// The offset in [0, `jitter_seconds`) seconds, to the millisecond, of the object with UID
/// `uid`. No jitter (0, unset or negative) is no offset.
pub fn offset(uid: &str, jitter_seconds: i32) -> SignedDuration {
    let Ok(window_ms) = u64::try_from(jitter_seconds.min(MAX_JITTER_SECONDS)) else {
        return SignedDuration::ZERO;
    };
    let window_ms = window_ms * 1000;
    if window_ms == 0 {
        return SignedDuration::ZERO;
    }
    // A domain prefix, so that the offset is not related to any other hash of the UID
    // (Job names hash it too).
    let digest = Sha256::new()
        .chain_update(b"syncseq.dev/jitter\0")
        .chain_update(uid.as_bytes())
        .finalize();
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    // Modulo bias: at most 3.6e6 / 2^64 — none worth a rejection loop.
    let ms = u64::from_be_bytes(head) % window_ms;
    SignedDuration::from_millis(i64::try_from(ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The formula is part of the contract: changing it would move every object's start at
    /// the upgrade. (The value is Python's `int.from_bytes(sha256(b"syncseq.dev/jitter\0" +
    /// uid).digest()[:8], "big") % 600_000`.)
    #[test]
    fn the_offset_of_a_uid_is_pinned() {
        let uid = "6f1b3c2a-9d4e-4f5a-8b7c-0e1d2c3b4a59";
        assert_eq!(offset(uid, 600), SignedDuration::from_millis(540_781));
    }

    #[test]
    fn no_jitter_is_no_offset() {
        for n in [0, -1, i32::MIN] {
            assert_eq!(offset("any", n), SignedDuration::ZERO);
        }
    }

    /// A thousand objects with a 10 s window: each second of it gets its share.
    #[test]
    fn offsets_spread_over_the_window() {
        let mut buckets = [0u32; 10];
        for i in 0..1000 {
            let o = offset(&format!("00000000-0000-4000-8000-{i:012}"), 10);
            buckets[usize::try_from(o.as_secs()).unwrap()] += 1;
        }
        assert!(
            buckets.iter().all(|&b| (70..=130).contains(&b)),
            "{buckets:?}"
        );
    }

    proptest! {
        #[test]
        fn the_offset_is_within_the_window(uid in ".{0,40}", n in 1i32..=5000) {
            let o = offset(&uid, n);
            prop_assert!(o >= SignedDuration::ZERO);
            prop_assert!(o < SignedDuration::from_secs(i64::from(n.min(MAX_JITTER_SECONDS))));
        }
    }
}
