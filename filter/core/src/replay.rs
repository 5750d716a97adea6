//! Replay protection: remembers accepted nonces in bounded tables kept in a
//! shared key-value store with compare-and-swap (in Envoy, proxy-wasm shared
//! data, which every worker thread of the process sees within one `vm_id`).
//!
//! # Layout
//! A table has a fixed number of buckets; a nonce always maps to the same
//! bucket (by SHA-256 of the nonce), and each bucket holds at most
//! [`BUCKET_CAPACITY`] live entries of [`ENTRY_BYTES`] bytes. Every update is
//! a compare-and-swap of one bucket, so two workers racing on the same nonce
//! cannot both win. Expired entries are dropped whenever their bucket is
//! written. A bucket is a loss system: with `fill` = live nonces / capacity,
//! a new nonce is refused with probability [`refusal_rate`]`(fill)` (Erlang
//! B with [`BUCKET_CAPACITY`] servers). At the documented sizing,
//! `nonce_cache_max_entries ≥ 2 × nonce requests per second × TTL`
//! ([`SIZING_FACTOR`]), that is below one in a million.
//!
//! # Configuration changes
//! Each table is named by its bucket count. Filter instances register the
//! table they own in a registry key (reference count, TTL, skew); a claim
//! writes the nonce into its own table and into every other table still live
//! there, so a nonce accepted under one capacity is refused under another. A
//! table stays live while an instance holds it and, after the last one is
//! done, until every nonce in it is stale. An entry keeps the request's signed
//! timestamp and stays live while that timestamp is still acceptable under
//! the reader's own `clock_skew_seconds`, so a wider skew or a longer TTL in a
//! new configuration never revives a replay. Buckets are created without a
//! blind overwrite (see [`SharedStore::create`]).

use sha2::{Digest, Sha256};

use crate::scheme::{Detail, Reject, Rejection};

/// Live entries one bucket may hold.
pub const BUCKET_CAPACITY: usize = 64;
/// Largest configurable number of entries.
pub const MAX_ENTRIES_LIMIT: u64 = 4_194_304;
/// Smallest configurable number of entries (rounded up to one bucket).
pub const MIN_ENTRIES: u64 = 16;
/// Compare-and-swap attempts before giving up (fail closed).
pub const MAX_CAS_ATTEMPTS: usize = 8;
/// The documented sizing: capacity at least this many times the live nonces
/// (nonce requests per second × TTL).
pub const SIZING_FACTOR: f64 = 2.0;
/// Bytes one entry takes in a bucket (16-byte id, expiry, signed timestamp).
pub const ENTRY_BYTES: usize = ID_LEN + 8;

const FORMAT_VERSION: u8 = 2;
pub(crate) const ID_LEN: usize = 16;
const LAYOUT_BYTES: usize = 20;
/// Shared-data key of the table registry.
pub const REGISTRY_KEY: &str = "edge-hmac/nonce/v2/tables";
/// Shared-data key written to obtain a fresh CAS token.
pub const TOKEN_KEY: &str = "edge-hmac/nonce/v2/token";

/// A key-value store with compare-and-swap and proxy-wasm's semantics: every
/// write gets a new token from one counter; a write with a token to a
/// missing key creates it.
pub trait SharedStore {
    /// The value and CAS token under `key`, or `None` when it does not exist.
    fn get(&mut self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError>;
    /// Writes `value` if the key's token is still `cas` (`None`: create or
    /// overwrite unconditionally). `Ok(false)` on a token mismatch.
    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, StoreError>;

    /// A token no other key holds: the one just given to [`TOKEN_KEY`].
    fn fresh_token(&mut self) -> Result<u32, StoreError> {
        self.set(TOKEN_KEY, &[], None)?;
        match self.get(TOKEN_KEY)? {
            Some((_, token)) => Ok(token),
            None => Err(StoreError("the token key vanished after a write".into())),
        }
    }

    /// Creates `key` with `value` unless it exists. `token` comes from
    /// [`SharedStore::fresh_token`] before the caller saw the key missing: a
    /// key created since then carries a later token, so the write is refused
    /// instead of wiping it (`Ok(false)`). proxy-wasm has no create-if-absent;
    /// this one is exact unless 2³² writes happen between the two calls.
    fn create(&mut self, key: &str, value: &[u8], token: u32) -> Result<bool, StoreError> {
        self.set(key, value, Some(token))
    }
}

/// The host store failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("shared data store error: {0}")]
pub struct StoreError(pub String);

/// Why a nonce was not recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimError {
    /// The nonce is live in a table: a replay.
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

/// Expected share of new nonces refused (`replay_cache_unavailable`) when a
/// table holds `fill × capacity` live nonces on average, with nonces spread
/// uniformly: the Erlang B loss formula for one bucket, offered
/// `fill × BUCKET_CAPACITY`, with [`BUCKET_CAPACITY`] places.
pub fn refusal_rate(fill: f64) -> f64 {
    let offered = fill * BUCKET_CAPACITY as f64;
    let mut b = 1.0;
    for k in 1..=BUCKET_CAPACITY {
        b = offered * b / (k as f64 + offered * b);
    }
    b
}

/// Fills an in-memory table of `buckets` to `fill` of its capacity in steady
/// state (TTL 40 s, so each nonce is live for 41 s, at a constant rate of uniformly random nonces: SHA-256 of
/// distinct strings), then counts how many of `measured` further claims are
/// refused as full. Deterministic; the tests and `examples/replay_fill.rs`
/// measure the table against [`refusal_rate`] with it.
pub fn steady_state_refusals(buckets: u32, fill: f64, measured: u64) -> Result<u64, ClaimError> {
    let capacity = u64::from(buckets) * BUCKET_CAPACITY as u64;
    let ttl = 40u64;
    // An entry is live through its expiry second: TTL + 1 seconds.
    let per_second = (((capacity as f64 * fill) / (ttl + 1) as f64).round() as u64).max(1);
    let cache = ReplayCache::new(capacity, ttl, ttl / 2);
    let mut store = MemoryStore::default();
    let start = 1_800_000_000;
    cache
        .register(&mut store, start)
        .map_err(|e| ClaimError::Unavailable(e.to_string()))?;
    let warmup = 2 * ttl * per_second;
    let mut refused = 0u64;
    for i in 0..warmup + measured {
        let now = start + i / per_second;
        match cache.claim(&mut store, &format!("n{i:016x}"), now, now) {
            Ok(()) => {}
            Err(ClaimError::Full) => refused += u64::from(i >= warmup),
            Err(other) => return Err(other),
        }
    }
    Ok(refused)
}

/// Where a filter instance records the nonces it accepts.
pub trait Nonces {
    /// Records `nonce` of a request signed at `timestamp` as used at Unix
    /// time `now`, or says why it cannot be (a replay, a full bucket, a
    /// store that failed: the caller refuses the request either way).
    fn claim(&mut self, nonce: &str, timestamp: u64, now: u64) -> Result<(), ClaimError>;

    /// True when `nonce` is live in a table at Unix time `now` (a replay
    /// this process already knows), without recording anything: the look-up
    /// before a nonce store is asked.
    fn seen(&mut self, nonce: &str, now: u64) -> Result<bool, ClaimError>;
}

/// A [`ReplayCache`] over a [`SharedStore`]: the proxy-wasm host's tables.
pub struct SharedNonces<'a, S> {
    cache: &'a ReplayCache,
    store: &'a mut S,
}

impl<S: SharedStore> Nonces for SharedNonces<'_, S> {
    fn claim(&mut self, nonce: &str, timestamp: u64, now: u64) -> Result<(), ClaimError> {
        self.cache.claim(self.store, nonce, timestamp, now)
    }

    fn seen(&mut self, nonce: &str, now: u64) -> Result<bool, ClaimError> {
        self.cache.seen(self.store, nonce, now)
    }
}

/// Layout of one instance's replay table and its replay window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayCache {
    buckets: u32,
    ttl_seconds: u64,
    skew_seconds: u64,
}

impl ReplayCache {
    /// A table holding at most `max_entries` (rounded up to whole buckets)
    /// nonces for `ttl_seconds` each, for timestamps accepted within
    /// `skew_seconds`.
    pub fn new(max_entries: u64, ttl_seconds: u64, skew_seconds: u64) -> Self {
        let max_entries = max_entries.clamp(1, MAX_ENTRIES_LIMIT);
        let buckets = max_entries.div_ceil(BUCKET_CAPACITY as u64);
        Self {
            buckets: u32::try_from(buckets).unwrap_or(u32::MAX),
            ttl_seconds,
            skew_seconds,
        }
    }

    /// This layout's tables in `store` as [`Nonces`].
    pub fn shared<'a, S: SharedStore>(&'a self, store: &'a mut S) -> SharedNonces<'a, S> {
        SharedNonces { cache: self, store }
    }

    /// The window this table serves (for the native tables).
    pub(crate) fn skew_seconds(&self) -> u64 {
        self.skew_seconds
    }

    /// Number of buckets.
    pub fn buckets(&self) -> u32 {
        self.buckets
    }

    /// Largest number of live entries the table can hold.
    pub fn capacity(&self) -> u64 {
        u64::from(self.buckets) * BUCKET_CAPACITY as u64
    }

    /// How long an accepted nonce is remembered, at least.
    pub fn ttl_seconds(&self) -> u64 {
        self.ttl_seconds
    }

    /// The shared-data key of bucket `bucket` in the table of `buckets`.
    pub fn bucket_key(buckets: u32, bucket: u32) -> String {
        format!("edge-hmac/nonce/v2/{buckets}/{bucket}")
    }

    /// Creates the missing buckets of this table and registers it (run at
    /// configuration time, before traffic, in every VM). A bucket that
    /// exists, or that another worker creates meanwhile, is left as it is.
    pub fn register(&self, store: &mut impl SharedStore, now: u64) -> Result<(), StoreError> {
        let token = store.fresh_token()?;
        for bucket in 0..self.buckets {
            let key = Self::bucket_key(self.buckets, bucket);
            if store.get(&key)?.is_none() {
                store.create(&key, &[FORMAT_VERSION], token)?;
            }
        }
        let mut swept = Vec::new();
        self.update_registry(store, |tables| {
            swept = tables.prune(now, self.skew_seconds);
            tables.hold(self);
        })?;
        for buckets in swept {
            sweep(store, buckets, now);
        }
        Ok(())
    }

    /// Releases this instance's hold on its table (the instance is gone).
    /// The table stays live until every nonce in it is stale.
    pub fn unregister(&self, store: &mut impl SharedStore, now: u64) -> Result<(), StoreError> {
        self.update_registry(store, |tables| tables.release(self.buckets, now))
    }

    fn update_registry(
        &self,
        store: &mut impl SharedStore,
        mut change: impl FnMut(&mut Tables),
    ) -> Result<(), StoreError> {
        for _ in 0..MAX_CAS_ATTEMPTS * 4 {
            let (mut tables, cas) = match store.get(REGISTRY_KEY)? {
                Some((bytes, cas)) => (Tables::decode(&bytes)?, Some(cas)),
                None => (Tables::default(), None),
            };
            change(&mut tables);
            let written = match cas {
                Some(cas) => store.set(REGISTRY_KEY, &tables.encode(), Some(cas))?,
                None => {
                    let token = store.fresh_token()?;
                    store.create(REGISTRY_KEY, &tables.encode(), token)?
                }
            };
            if written {
                return Ok(());
            }
        }
        Err(StoreError(
            "the replay table registry kept changing under updates".into(),
        ))
    }

    /// The bucket a nonce lives in, in a table of `buckets`, and its id.
    pub(crate) fn locate(buckets: u32, nonce: &str) -> (u32, [u8; ID_LEN]) {
        let digest = Sha256::digest(nonce.as_bytes());
        let mut head = [0u8; 8];
        head.copy_from_slice(&digest[..8]);
        let bucket = u64::from_be_bytes(head) % u64::from(buckets.max(1));
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&digest[8..8 + ID_LEN]);
        (u32::try_from(bucket).unwrap_or(0), id)
    }

    /// Records `nonce` of a request signed at `timestamp` as used at Unix
    /// time `now`, or says why it cannot be: in this instance's table and in
    /// every other live table of the registry.
    pub fn claim(
        &self,
        store: &mut impl SharedStore,
        nonce: &str,
        timestamp: u64,
        now: u64,
    ) -> Result<(), ClaimError> {
        let tables = registry(store)?;
        let entry = Entry {
            expires: secs(now.saturating_add(self.ttl_seconds)),
            timestamp: secs(timestamp),
        };
        // Entries stay while any registered configuration could still
        // accept their timestamp.
        let skew = tables.widest_skew(self.skew_seconds);
        self.claim_in(store, self.buckets, nonce, entry, now, skew)?;
        for other in tables.0.iter().filter(|t| t.buckets != self.buckets) {
            if other.live(now, skew) {
                self.claim_in(store, other.buckets, nonce, entry, now, skew)?;
            }
        }
        Ok(())
    }

    /// True when `nonce` is live in this instance's table or in any other
    /// live table of the registry at Unix time `now`. Reads only.
    pub fn seen(
        &self,
        store: &mut impl SharedStore,
        nonce: &str,
        now: u64,
    ) -> Result<bool, ClaimError> {
        let tables = registry(store)?;
        let skew = tables.widest_skew(self.skew_seconds);
        let others = tables
            .0
            .iter()
            .filter(|t| t.buckets != self.buckets && t.live(now, skew))
            .map(|t| t.buckets);
        for buckets in core::iter::once(self.buckets).chain(others) {
            let (bucket, id) = Self::locate(buckets, nonce);
            let key = Self::bucket_key(buckets, bucket);
            let Some((bytes, _)) = store
                .get(&key)
                .map_err(|e| ClaimError::Unavailable(e.to_string()))?
            else {
                continue;
            };
            let entries = entries(&bytes).map_err(ClaimError::Unavailable)?;
            if entries
                .chunks_exact(ENTRY_BYTES)
                .any(|e| e[..ID_LEN] == id && Entry::decode(e).live(now, skew))
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn claim_in(
        &self,
        store: &mut impl SharedStore,
        buckets: u32,
        nonce: &str,
        entry: Entry,
        now: u64,
        skew: u64,
    ) -> Result<(), ClaimError> {
        let (bucket, id) = Self::locate(buckets, nonce);
        let key = Self::bucket_key(buckets, bucket);
        for _ in 0..MAX_CAS_ATTEMPTS {
            let current = store
                .get(&key)
                .map_err(|e| ClaimError::Unavailable(e.to_string()))?;
            // Buckets are created before their table is registered. A missing
            // one can only be written blindly (no CAS on a missing key), so
            // refuse.
            let Some((bytes, cas)) = current else {
                return Err(ClaimError::Unavailable(format!(
                    "bucket {bucket} of table {buckets} does not exist"
                )));
            };
            let next = insert(&bytes, &id, entry, now, skew)?;
            if store
                .set(&key, &next, Some(cas))
                .map_err(|e| ClaimError::Unavailable(e.to_string()))?
            {
                return Ok(());
            }
        }
        Err(ClaimError::Unavailable(format!(
            "bucket {bucket} of table {buckets} changed under {MAX_CAS_ATTEMPTS} consecutive updates"
        )))
    }
}

/// The table registry as it stands in `store` (a claim or a look-up fails
/// closed when it is missing or unreadable).
fn registry(store: &mut impl SharedStore) -> Result<Tables, ClaimError> {
    match store.get(REGISTRY_KEY) {
        Ok(Some((bytes, _))) => {
            Tables::decode(&bytes).map_err(|e| ClaimError::Unavailable(e.to_string()))
        }
        Ok(None) => Err(ClaimError::Unavailable(
            "the replay table registry does not exist (not initialised)".into(),
        )),
        Err(e) => Err(ClaimError::Unavailable(e.to_string())),
    }
}

pub(crate) fn secs(t: u64) -> u32 {
    u32::try_from(t).unwrap_or(u32::MAX)
}

/// What one bucket entry keeps besides the id.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    /// Acceptance time + TTL of the instance that accepted it.
    pub(crate) expires: u32,
    /// The request's signed timestamp.
    pub(crate) timestamp: u32,
}

impl Entry {
    fn decode(bytes: &[u8]) -> Self {
        let word = |i: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&bytes[ID_LEN + i..ID_LEN + i + 4]);
            u32::from_be_bytes(w)
        };
        Self {
            expires: word(0),
            timestamp: word(4),
        }
    }

    /// Live through its expiry second (with a TTL of twice the skew, a
    /// request signed at the edge of the window stays refused until its
    /// timestamp is stale), and while its timestamp is acceptable under the
    /// reader's skew.
    pub(crate) fn live(&self, now: u64, skew: u64) -> bool {
        now <= u64::from(self.expires) || now <= u64::from(self.timestamp).saturating_add(skew)
    }
}

/// The bucket after adding `id`: live entries kept, expired ones dropped.
fn insert(
    bucket: &[u8],
    id: &[u8; ID_LEN],
    entry: Entry,
    now: u64,
    skew: u64,
) -> Result<Vec<u8>, ClaimError> {
    let entries = entries(bucket).map_err(ClaimError::Unavailable)?;
    let mut next = Vec::with_capacity(1 + BUCKET_CAPACITY * ENTRY_BYTES);
    next.push(FORMAT_VERSION);
    let mut live = 0usize;
    for existing in entries.chunks_exact(ENTRY_BYTES) {
        if !Entry::decode(existing).live(now, skew) {
            continue;
        }
        if &existing[..ID_LEN] == id {
            return Err(ClaimError::Replayed);
        }
        live += 1;
        next.extend_from_slice(existing);
    }
    if live >= BUCKET_CAPACITY {
        return Err(ClaimError::Full);
    }
    next.extend_from_slice(id);
    next.extend_from_slice(&entry.expires.to_be_bytes());
    next.extend_from_slice(&entry.timestamp.to_be_bytes());
    Ok(next)
}

fn entries(bucket: &[u8]) -> Result<&[u8], String> {
    let Some((&version, entries)) = bucket.split_first() else {
        return Err("empty bucket value".into());
    };
    if version != FORMAT_VERSION || entries.len() % ENTRY_BYTES != 0 {
        return Err("bucket value has an unknown layout".into());
    }
    Ok(entries)
}

/// Frees the dead entries of a retired table (compare-and-swap per bucket:
/// an entry written meanwhile, by a new holder, is kept). Best effort.
fn sweep(store: &mut impl SharedStore, buckets: u32, now: u64) {
    for bucket in 0..buckets {
        let key = ReplayCache::bucket_key(buckets, bucket);
        let Ok(Some((bytes, cas))) = store.get(&key) else {
            continue;
        };
        let Ok(entries) = entries(&bytes) else {
            continue;
        };
        // The registry drops a table only once its entries are stale under
        // the widest skew it knows: what is left is a foreign writer's copy,
        // kept until its own expiry.
        let mut next = vec![FORMAT_VERSION];
        for existing in entries.chunks_exact(ENTRY_BYTES) {
            if Entry::decode(existing).live(now, 0) {
                next.extend_from_slice(existing);
            }
        }
        if next.len() != bytes.len() {
            let _ = store.set(&key, &next, Some(cas));
        }
    }
}

/// One table in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Table {
    pub(crate) buckets: u32,
    /// Instances holding the table.
    pub(crate) holders: u32,
    /// When the last holder released it (0 while held).
    pub(crate) released_at: u32,
    /// Longest TTL among its holders.
    pub(crate) ttl: u32,
    /// Widest skew among its holders.
    pub(crate) skew: u32,
}

impl Table {
    /// Whether a reader with `skew` must still consult the table: held, or
    /// some entry may still be live (accepted at `released_at` at the latest,
    /// so alive until then + TTL, or with a timestamp up to the holders' skew
    /// later, acceptable for the reader's skew after that).
    pub(crate) fn live(&self, now: u64, skew: u64) -> bool {
        let until = u64::from(self.released_at)
            + u64::from(self.ttl).max(u64::from(self.skew).saturating_add(skew));
        self.holders > 0 || now <= until
    }
}

/// The registry of tables, kept under [`REGISTRY_KEY`] (and, for the native
/// tables, in process memory).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Tables(pub(crate) Vec<Table>);

impl Tables {
    fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let Some((&version, rest)) = bytes.split_first() else {
            return Err(StoreError("empty replay table registry".into()));
        };
        if version != FORMAT_VERSION || rest.len() % LAYOUT_BYTES != 0 {
            return Err(StoreError(
                "the replay table registry has an unknown layout".into(),
            ));
        }
        let tables = rest
            .chunks_exact(LAYOUT_BYTES)
            .map(|t| {
                let word = |i: usize| {
                    let mut w = [0u8; 4];
                    w.copy_from_slice(&t[i * 4..i * 4 + 4]);
                    u32::from_be_bytes(w)
                };
                Table {
                    buckets: word(0),
                    holders: word(1),
                    released_at: word(2),
                    ttl: word(3),
                    skew: word(4),
                }
            })
            .collect();
        Ok(Self(tables))
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.0.len() * LAYOUT_BYTES);
        out.push(FORMAT_VERSION);
        for t in &self.0 {
            for w in [t.buckets, t.holders, t.released_at, t.ttl, t.skew] {
                out.extend_from_slice(&w.to_be_bytes());
            }
        }
        out
    }

    /// The widest skew among the registered tables and `own`.
    pub(crate) fn widest_skew(&self, own: u64) -> u64 {
        self.0.iter().map(|t| u64::from(t.skew)).fold(own, u64::max)
    }

    /// Drops released tables whose nonces are all stale for any reader (the
    /// widest skew the registry knows, and `own`); returns their bucket
    /// counts.
    pub(crate) fn prune(&mut self, now: u64, own: u64) -> Vec<u32> {
        let widest = self.widest_skew(own);
        let (gone, kept): (Vec<Table>, Vec<Table>) =
            self.0.iter().partition(|t| !t.live(now, widest));
        self.0 = kept;
        gone.into_iter().map(|t| t.buckets).collect()
    }

    pub(crate) fn hold(&mut self, cache: &ReplayCache) {
        let ttl = secs(cache.ttl_seconds);
        let skew = secs(cache.skew_seconds);
        match self.0.iter_mut().find(|t| t.buckets == cache.buckets) {
            Some(t) => {
                t.holders = t.holders.saturating_add(1);
                t.released_at = 0;
                t.ttl = t.ttl.max(ttl);
                t.skew = t.skew.max(skew);
            }
            None => self.0.push(Table {
                buckets: cache.buckets,
                holders: 1,
                released_at: 0,
                ttl,
                skew,
            }),
        }
    }

    pub(crate) fn release(&mut self, buckets: u32, now: u64) {
        if let Some(t) = self.0.iter_mut().find(|t| t.buckets == buckets) {
            t.holders = t.holders.saturating_sub(1);
            if t.holders == 0 {
                t.released_at = secs(now);
            }
        }
    }
}

/// An in-process [`SharedStore`] with proxy-wasm's semantics (one token
/// counter for all keys), for tests and the loader.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    values: std::collections::HashMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            values: std::collections::HashMap::new(),
            next_cas: 1,
        }
    }
}

impl SharedStore for MemoryStore {
    fn get(&mut self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        Ok(self.values.get(key).cloned())
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, StoreError> {
        if let (Some(cas), Some((_, current))) = (cas, self.values.get(key))
            && cas != *current
        {
            return Ok(false);
        }
        let token = self.next_cas;
        self.next_cas = self.next_cas.wrapping_add(1).max(1);
        self.values.insert(key.to_string(), (value.to_vec(), token));
        Ok(true)
    }
}

pub mod native;

#[cfg(test)]
mod tests;
