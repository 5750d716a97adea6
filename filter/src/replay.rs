//! Replay protection: remembers accepted nonces for a TTL in a bounded table
//! kept in a shared key-value store with compare-and-swap (in Envoy, proxy-wasm
//! shared data, which every worker thread of the process sees).
//!
//! The table has a fixed number of buckets; a nonce always maps to the same
//! bucket (by SHA-256 of the nonce), and each bucket holds at most
//! [`BUCKET_CAPACITY`] live entries. Every update is a compare-and-swap of
//! one bucket, so two workers racing on the same nonce cannot both win.
//! Memory is bounded by `buckets × BUCKET_CAPACITY × 24` bytes.

use sha2::{Digest, Sha256};

use crate::scheme::{Detail, Reject, Rejection};

/// Live entries one bucket may hold.
pub const BUCKET_CAPACITY: usize = 16;
/// Largest configurable number of entries.
pub const MAX_ENTRIES_LIMIT: u64 = 4_194_304;
/// Compare-and-swap attempts before giving up (fail closed).
pub const MAX_CAS_ATTEMPTS: usize = 8;

const FORMAT_VERSION: u8 = 1;
const ID_LEN: usize = 16;
const ENTRY_LEN: usize = ID_LEN + 8;

/// A key-value store with compare-and-swap, addressed by bucket number.
pub trait BucketStore {
    /// The bucket's bytes and CAS token, or `None` when it does not exist.
    fn get(&mut self, bucket: u32) -> Result<Option<(Vec<u8>, u32)>, StoreError>;
    /// Writes `value` if the bucket's token is still `cas` (`None`: create or
    /// overwrite unconditionally). `Ok(false)` on a token mismatch.
    fn set(&mut self, bucket: u32, value: &[u8], cas: Option<u32>) -> Result<bool, StoreError>;
}

/// The host store failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("shared data store error: {0}")]
pub struct StoreError(pub String);

/// Why a nonce was not recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimError {
    /// The nonce is live in the cache: a replay.
    Replayed,
    /// Its bucket already holds [`BUCKET_CAPACITY`] live entries.
    Full,
    /// The store failed, a bucket was unreadable, or CAS kept failing.
    Unavailable(String),
}

impl ClaimError {
    /// The spec outcome for this error.
    pub fn rejection(&self) -> Rejection {
        match self {
            ClaimError::Replayed => Rejection::new(Reject::ReplayedRequest, Detail::NonceSeen),
            ClaimError::Full => {
                Rejection::new(Reject::ReplayCacheUnavailable, Detail::ReplayCacheFull)
            }
            ClaimError::Unavailable(_) => {
                Rejection::new(Reject::ReplayCacheUnavailable, Detail::ReplayCacheError)
            }
        }
    }
}

/// Layout of the replay table: how many buckets and how long entries live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayCache {
    buckets: u32,
    ttl_seconds: u64,
}

impl ReplayCache {
    /// A table holding at most `max_entries` (rounded up to whole buckets)
    /// nonces for `ttl_seconds` each.
    pub fn new(max_entries: u64, ttl_seconds: u64) -> Self {
        let max_entries = max_entries.clamp(1, MAX_ENTRIES_LIMIT);
        let buckets = max_entries.div_ceil(BUCKET_CAPACITY as u64);
        Self {
            buckets: u32::try_from(buckets).unwrap_or(u32::MAX),
            ttl_seconds,
        }
    }

    /// Number of buckets.
    pub fn buckets(&self) -> u32 {
        self.buckets
    }

    /// Largest number of live entries the table can hold.
    pub fn capacity(&self) -> u64 {
        u64::from(self.buckets) * BUCKET_CAPACITY as u64
    }

    /// How long an accepted nonce is remembered.
    pub fn ttl_seconds(&self) -> u64 {
        self.ttl_seconds
    }

    /// Bytes of a freshly created, empty bucket.
    pub fn empty_bucket() -> &'static [u8] {
        &[FORMAT_VERSION]
    }

    /// Creates every bucket that does not exist yet (run once per VM at
    /// configuration time, before traffic, so request-time updates are always
    /// compare-and-swap on an existing bucket). Creating is a blind write (the
    /// host has no CAS for a missing key): two workers configuring at the
    /// same time both write an empty bucket, which is harmless before
    /// traffic.
    pub fn initialize(&self, store: &mut impl BucketStore) -> Result<(), StoreError> {
        for bucket in 0..self.buckets {
            if store.get(bucket)?.is_none() {
                store.set(bucket, Self::empty_bucket(), None)?;
            }
        }
        Ok(())
    }

    /// The bucket a nonce lives in and its 16-byte identifier.
    pub fn locate(&self, nonce: &str) -> (u32, [u8; ID_LEN]) {
        let digest = Sha256::digest(nonce.as_bytes());
        let mut head = [0u8; 8];
        head.copy_from_slice(&digest[..8]);
        let bucket = u64::from_be_bytes(head) % u64::from(self.buckets.max(1));
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&digest[8..8 + ID_LEN]);
        (u32::try_from(bucket).unwrap_or(0), id)
    }

    /// Records `nonce` as used at Unix time `now`, or says why it cannot be.
    pub fn claim(
        &self,
        store: &mut impl BucketStore,
        nonce: &str,
        now: u64,
    ) -> Result<(), ClaimError> {
        let (bucket, id) = self.locate(nonce);
        let expires = now.saturating_add(self.ttl_seconds);
        for _ in 0..MAX_CAS_ATTEMPTS {
            let current = store
                .get(bucket)
                .map_err(|e| ClaimError::Unavailable(e.to_string()))?;
            // Buckets are created at configuration time. A missing one can
            // only be written blindly (no CAS on a missing key), so refuse.
            let Some((bytes, cas)) = current else {
                return Err(ClaimError::Unavailable(format!(
                    "bucket {bucket} does not exist (replay table not initialised)"
                )));
            };
            let next = insert(&bytes, &id, now, expires)?;
            if store
                .set(bucket, &next, Some(cas))
                .map_err(|e| ClaimError::Unavailable(e.to_string()))?
            {
                return Ok(());
            }
        }
        Err(ClaimError::Unavailable(format!(
            "bucket {bucket} changed under {MAX_CAS_ATTEMPTS} consecutive updates"
        )))
    }
}

/// The bucket after adding `id`: live entries kept, expired ones dropped.
fn insert(bucket: &[u8], id: &[u8; ID_LEN], now: u64, expires: u64) -> Result<Vec<u8>, ClaimError> {
    let Some((&version, entries)) = bucket.split_first() else {
        return Err(ClaimError::Unavailable("empty bucket value".into()));
    };
    if version != FORMAT_VERSION || entries.len() % ENTRY_LEN != 0 {
        return Err(ClaimError::Unavailable(
            "bucket value has an unknown layout".into(),
        ));
    }
    let mut next = Vec::with_capacity(1 + (BUCKET_CAPACITY) * ENTRY_LEN);
    next.push(FORMAT_VERSION);
    let mut live = 0usize;
    for entry in entries.chunks_exact(ENTRY_LEN) {
        let (entry_id, expiry) = entry.split_at(ID_LEN);
        let mut exp = [0u8; 8];
        exp.copy_from_slice(expiry);
        // Live through its expiry second: with a TTL of twice the skew, a
        // request signed at the edge of the window stays refused until its
        // timestamp is stale.
        if u64::from_be_bytes(exp) < now {
            continue;
        }
        if entry_id == id {
            return Err(ClaimError::Replayed);
        }
        live += 1;
        next.extend_from_slice(entry);
    }
    if live >= BUCKET_CAPACITY {
        return Err(ClaimError::Full);
    }
    next.extend_from_slice(id);
    next.extend_from_slice(&expires.to_be_bytes());
    Ok(next)
}

/// An in-process [`BucketStore`], for tests and the loader.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    buckets: std::collections::HashMap<u32, (Vec<u8>, u32)>,
    next_cas: u32,
}

impl BucketStore for MemoryStore {
    fn get(&mut self, bucket: u32) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        Ok(self.buckets.get(&bucket).cloned())
    }

    fn set(&mut self, bucket: u32, value: &[u8], cas: Option<u32>) -> Result<bool, StoreError> {
        if let (Some(cas), Some((_, current))) = (cas, self.buckets.get(&bucket))
            && cas != *current
        {
            return Ok(false);
        }
        self.next_cas = self.next_cas.wrapping_add(1).max(1);
        self.buckets.insert(bucket, (value.to_vec(), self.next_cas));
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N1: &str = "nonce-aaaaaaaaaaaaaaaa";
    const N2: &str = "nonce-bbbbbbbbbbbbbbbb";

    fn cache() -> (ReplayCache, MemoryStore) {
        let cache = ReplayCache::new(1024, 600);
        let mut store = MemoryStore::default();
        cache.initialize(&mut store).unwrap();
        (cache, store)
    }

    /// A nonce is accepted once and refused the second time.
    #[test]
    fn second_use_is_a_replay() {
        let (cache, mut store) = cache();
        assert_eq!(cache.claim(&mut store, N1, 1000), Ok(()));
        assert_eq!(cache.claim(&mut store, N2, 1000), Ok(()));
        assert_eq!(cache.claim(&mut store, N1, 1001), Err(ClaimError::Replayed));
    }

    /// The nonce is remembered through the last second of its TTL and
    /// forgotten after it.
    #[test]
    fn expires_after_ttl() {
        let (cache, mut store) = cache();
        cache.claim(&mut store, N1, 1000).unwrap();
        assert_eq!(cache.claim(&mut store, N1, 1600), Err(ClaimError::Replayed));
        assert_eq!(cache.claim(&mut store, N1, 1601), Ok(()));
    }

    /// No replay window at the boundary: TTL = 2 x skew, a request signed at
    /// now + skew and accepted at now is still refused at now + 2 x skew, the
    /// last second its timestamp is accepted.
    #[test]
    fn boundary_replay_refused() {
        let skew = 300;
        let cache = ReplayCache::new(1024, 2 * skew);
        let mut store = MemoryStore::default();
        cache.initialize(&mut store).unwrap();
        let t0 = 10_000;
        cache.claim(&mut store, N1, t0).unwrap();
        // Timestamp t0 + skew is within the skew of t0 + 2 x skew.
        assert_eq!(
            cache.claim(&mut store, N1, t0 + 2 * skew),
            Err(ClaimError::Replayed)
        );
    }

    /// A missing bucket (table not initialised) fails closed.
    #[test]
    fn missing_bucket_fails_closed() {
        let cache = ReplayCache::new(16, 60);
        let mut store = MemoryStore::default();
        assert!(matches!(
            cache.claim(&mut store, N1, 1),
            Err(ClaimError::Unavailable(_))
        ));
    }

    /// A bucket never holds more than its capacity; the next nonce fails closed.
    #[test]
    fn full_bucket_fails_closed_and_recovers_after_expiry() {
        let cache = ReplayCache::new(1, 60); // one bucket
        let mut store = MemoryStore::default();
        cache.initialize(&mut store).unwrap();
        for i in 0..BUCKET_CAPACITY {
            cache
                .claim(&mut store, &format!("nonce-{i:016}"), 100)
                .unwrap();
        }
        assert_eq!(
            cache.claim(&mut store, "nonce-overflow-00000", 100),
            Err(ClaimError::Full)
        );
        let (bytes, _) = store.get(0).unwrap().unwrap();
        assert_eq!(bytes.len(), 1 + BUCKET_CAPACITY * ENTRY_LEN);
        assert_eq!(cache.claim(&mut store, "nonce-overflow-00000", 161), Ok(()));
    }

    /// The table size is rounded up to whole buckets and capped.
    #[test]
    fn capacity_is_bounded() {
        assert_eq!(ReplayCache::new(1, 1).capacity(), BUCKET_CAPACITY as u64);
        assert_eq!(ReplayCache::new(100_000, 1).buckets(), 6250);
        assert_eq!(ReplayCache::new(u64::MAX, 1).capacity(), MAX_ENTRIES_LIMIT);
    }

    /// A store whose bucket changes between read and write: the claim retries
    /// and still sees the racing writer's nonce.
    #[test]
    fn concurrent_writer_is_not_overwritten() {
        struct Racing {
            inner: MemoryStore,
            cache: ReplayCache,
            raced: bool,
        }
        impl BucketStore for Racing {
            fn get(&mut self, b: u32) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
                let out = self.inner.get(b);
                if !self.raced {
                    self.raced = true;
                    // Another worker claims the same nonce right after our read.
                    let cache = self.cache;
                    cache.claim(&mut self.inner, N1, 10).unwrap();
                }
                out
            }
            fn set(&mut self, b: u32, v: &[u8], cas: Option<u32>) -> Result<bool, StoreError> {
                self.inner.set(b, v, cas)
            }
        }
        let (cache, inner) = cache();
        let mut store = Racing {
            inner,
            cache,
            raced: false,
        };
        assert_eq!(cache.claim(&mut store, N1, 10), Err(ClaimError::Replayed));
    }

    /// Constant CAS failure ends in a fail-closed error, not a loop.
    #[test]
    fn endless_contention_fails_closed() {
        struct AlwaysMismatch(MemoryStore);
        impl BucketStore for AlwaysMismatch {
            fn get(&mut self, b: u32) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
                self.0.get(b)
            }
            fn set(&mut self, _: u32, _: &[u8], _: Option<u32>) -> Result<bool, StoreError> {
                Ok(false)
            }
        }
        let (cache, inner) = cache();
        let err = cache.claim(&mut AlwaysMismatch(inner), N1, 10).unwrap_err();
        assert!(matches!(err, ClaimError::Unavailable(_)));
        assert_eq!(err.rejection().reason, Reject::ReplayCacheUnavailable);
    }

    /// A bucket with a foreign layout is never silently reset.
    #[test]
    fn corrupt_bucket_fails_closed() {
        let (cache, mut store) = cache();
        let (bucket, _) = cache.locate(N1);
        store.set(bucket, b"\x02garbage", None).unwrap();
        assert!(matches!(
            cache.claim(&mut store, N1, 10),
            Err(ClaimError::Unavailable(_))
        ));
    }
}
