//! The filter's counters and gauges: their names and when each moves. Both
//! hosts define exactly these (by index, [`Counter::ALL`]) and bump what the
//! [`crate::stream`] state machine reports, so the numbers mean the same on
//! either host. Each host's stats scope adds its own prefix: `wasmcustom.`
//! for the proxy-wasm filter, `dynamicmodulescustom.` for the native module.

use crate::scheme::{KeyUsed, Reject};

/// The part every name starts with.
pub const PREFIX: &str = "edge_hmac.";

/// A counter of the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// A request fully verified (headers and body).
    Verified,
    /// …with the key in this slot (`verified_<slot>_key`).
    VerifiedKey(KeyUsed),
    /// A verified request whose body was signed `UNSIGNED-PAYLOAD`.
    VerifiedUnsignedPayload,
    /// A verified upgrade handshake (websocket, `CONNECT`).
    VerifiedUpgrade,
    /// A request whose RFC 9421 signature headers verified.
    VerifiedRfc9421,
    /// A request on an exempt path let through unsigned.
    Exempt,
    /// A CORS preflight let through unsigned.
    CorsPreflight,
    /// A nonce refused because its bucket was full.
    NonceCacheFull,
    /// The host failed to give the filter its input.
    InternalError,
    /// A claim sent to the shared nonce store.
    NonceStoreClaim,
    /// A nonce the store said another request already claimed.
    NonceStoreReplayed,
    /// A claim the store did not answer (said unavailable, timed out, failed).
    NonceStoreUnavailable,
    /// A nonce recorded only in this process's table because the store was
    /// unavailable (`on_unavailable: local`).
    NonceStoreFallback,
    /// A refusal, by outcome code (`rejected.<code>`).
    Rejected(Reject),
}

/// How many counters there are.
pub const COUNTERS: usize = 12 + KeyUsed::ALL.len() + Reject::ALL.len();

impl Counter {
    /// Every counter, at the index [`Counter::index`] gives it.
    pub const ALL: [Counter; COUNTERS] = {
        let mut all = [Counter::Verified; COUNTERS];
        let mut i = 0;
        while i < KeyUsed::ALL.len() {
            all[1 + i] = Counter::VerifiedKey(KeyUsed::ALL[i]);
            i += 1;
        }
        let fixed = 1 + KeyUsed::ALL.len();
        all[fixed] = Counter::VerifiedUnsignedPayload;
        all[fixed + 1] = Counter::VerifiedUpgrade;
        all[fixed + 2] = Counter::VerifiedRfc9421;
        all[fixed + 3] = Counter::Exempt;
        all[fixed + 4] = Counter::CorsPreflight;
        all[fixed + 5] = Counter::NonceCacheFull;
        all[fixed + 6] = Counter::InternalError;
        all[fixed + 7] = Counter::NonceStoreClaim;
        all[fixed + 8] = Counter::NonceStoreReplayed;
        all[fixed + 9] = Counter::NonceStoreUnavailable;
        all[fixed + 10] = Counter::NonceStoreFallback;
        let mut j = 0;
        while j < Reject::ALL.len() {
            all[fixed + 11 + j] = Counter::Rejected(Reject::ALL[j]);
            j += 1;
        }
        all
    };

    /// Its position in [`Counter::ALL`] (hosts keep their metric ids in an
    /// array in that order).
    pub fn index(self) -> usize {
        let fixed = 1 + KeyUsed::ALL.len();
        match self {
            Counter::Verified => 0,
            // KeyUsed's discriminant is its index in KeyUsed::ALL.
            Counter::VerifiedKey(slot) => 1 + slot as usize,
            Counter::VerifiedUnsignedPayload => fixed,
            Counter::VerifiedUpgrade => fixed + 1,
            Counter::VerifiedRfc9421 => fixed + 2,
            Counter::Exempt => fixed + 3,
            Counter::CorsPreflight => fixed + 4,
            Counter::NonceCacheFull => fixed + 5,
            Counter::InternalError => fixed + 6,
            Counter::NonceStoreClaim => fixed + 7,
            Counter::NonceStoreReplayed => fixed + 8,
            Counter::NonceStoreUnavailable => fixed + 9,
            Counter::NonceStoreFallback => fixed + 10,
            Counter::Rejected(reason) => {
                fixed
                    + 11
                    + Reject::ALL
                        .iter()
                        .position(|r| *r == reason)
                        .unwrap_or_default()
            }
        }
    }

    /// Its name: `edge_hmac.verified`, `edge_hmac.rejected.stale_timestamp`, …
    pub fn name(self) -> String {
        let rest = match self {
            Counter::Verified => "verified".to_owned(),
            Counter::VerifiedKey(slot) => format!("verified_{}_key", slot.slot()),
            Counter::VerifiedUnsignedPayload => "verified_unsigned_payload".to_owned(),
            Counter::VerifiedUpgrade => "verified_upgrade".to_owned(),
            Counter::VerifiedRfc9421 => "verified_rfc9421".to_owned(),
            Counter::Exempt => "exempt".to_owned(),
            Counter::CorsPreflight => "cors_preflight".to_owned(),
            Counter::NonceCacheFull => "nonce_cache_full".to_owned(),
            Counter::InternalError => "internal_error".to_owned(),
            Counter::NonceStoreClaim => "nonce_store.claims".to_owned(),
            Counter::NonceStoreReplayed => "nonce_store.replayed".to_owned(),
            Counter::NonceStoreUnavailable => "nonce_store.unavailable".to_owned(),
            Counter::NonceStoreFallback => "nonce_store.fallback".to_owned(),
            Counter::Rejected(reason) => format!("rejected.{}", reason.code()),
        };
        format!("{PREFIX}{rest}")
    }
}

/// The gauge that says a proxy holds key `fingerprint` in `slot`:
/// `edge_hmac.key.<slot>.<fingerprint>`, above zero while it does (what
/// `edge-hmac rotate status` reads).
pub fn key_gauge_name(slot: KeyUsed, fingerprint: &str) -> String {
    format!("{PREFIX}key.{}.{fingerprint}", slot.slot())
}

/// Where the state machine reports counts; each host maps them to its
/// metrics.
pub trait Counters {
    /// Adds one to `counter`.
    fn count(&self, counter: Counter);
}

/// Counts into an array, for tests.
#[derive(Debug)]
pub struct CountingSink(pub [std::sync::atomic::AtomicU64; COUNTERS]);

impl Default for CountingSink {
    fn default() -> Self {
        Self(std::array::from_fn(|_| {
            std::sync::atomic::AtomicU64::new(0)
        }))
    }
}

impl CountingSink {
    /// The value of `counter`.
    pub fn get(&self, counter: Counter) -> u64 {
        self.0
            .get(counter.index())
            .map_or(0, |c| c.load(std::sync::atomic::Ordering::Relaxed))
    }
}

impl Counters for CountingSink {
    fn count(&self, counter: Counter) {
        if let Some(c) = self.0.get(counter.index()) {
            c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every counter sits at its own index with a distinct name, and the
    /// names are the ones the docs list and `rotate status` reads.
    #[test]
    fn counters_are_indexed_and_named() {
        let mut names = std::collections::HashSet::new();
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(c.index(), i, "{c:?}");
            assert!(names.insert(c.name()), "{c:?}");
        }
        assert_eq!(Counter::Verified.name(), "edge_hmac.verified");
        assert_eq!(
            Counter::VerifiedKey(KeyUsed::Previous).name(),
            "edge_hmac.verified_previous_key"
        );
        assert_eq!(
            Counter::Rejected(Reject::UnsupportedFormat).name(),
            "edge_hmac.rejected.unsupported_format"
        );
        assert_eq!(
            key_gauge_name(KeyUsed::Pending, "0a1b2c3d"),
            "edge_hmac.key.pending.0a1b2c3d"
        );
    }
}
