//! The replay tables of the native host: the same layout, bounds and rules
//! as the shared-data tables of [`super`] (buckets of [`BUCKET_CAPACITY`]
//! chosen by SHA-256 of the nonce, an entry live through its expiry second
//! and while its signed timestamp is acceptable, a full bucket refused, a
//! table kept while held and until its nonces are stale, every live table
//! written on a claim so a configuration change keeps recent nonces), kept
//! in process memory as a concurrent structure instead of serialized into a
//! key-value store: one lock per bucket, a read-mostly registry.
//!
//! Every worker thread of the Envoy process shares one [`ProcessTables`]
//! (`ProcessTables::global`), as every worker of a wasm VM shares proxy-wasm
//! shared data. A lock poisoned by a panic elsewhere is taken over: a bucket
//! is only ever changed by whole-entry pushes and retains, so it is
//! consistent at every point a panic could leave it.

use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use super::{BUCKET_CAPACITY, ClaimError, Entry, ID_LEN, Nonces, ReplayCache, Table, Tables, secs};

/// One live entry of a bucket.
#[derive(Debug, Clone, Copy)]
struct Slot {
    id: [u8; ID_LEN],
    entry: Entry,
}

/// The buckets of one table (one bucket count).
#[derive(Debug)]
struct Buckets(Box<[Mutex<Vec<Slot>>]>);

impl Buckets {
    fn new(count: u32) -> Self {
        Self((0..count).map(|_| Mutex::new(Vec::new())).collect())
    }

    /// Adds `id` to `bucket`, dropping dead entries on the way.
    fn insert(
        &self,
        bucket: u32,
        id: [u8; ID_LEN],
        entry: Entry,
        now: u64,
        skew: u64,
    ) -> Result<(), ClaimError> {
        let Some(lock) = usize::try_from(bucket).ok().and_then(|b| self.0.get(b)) else {
            return Err(ClaimError::Unavailable(format!(
                "bucket {bucket} is outside its table"
            )));
        };
        let mut slots = lock.lock().unwrap_or_else(PoisonError::into_inner);
        slots.retain(|s| s.entry.live(now, skew));
        if slots.iter().any(|s| s.id == id) {
            return Err(ClaimError::Replayed);
        }
        if slots.len() >= BUCKET_CAPACITY {
            return Err(ClaimError::Full);
        }
        if slots.capacity() == 0 {
            slots.reserve_exact(BUCKET_CAPACITY);
        }
        slots.push(Slot { id, entry });
        Ok(())
    }

    /// True when `id` is live in `bucket`.
    fn contains(&self, bucket: u32, id: &[u8; ID_LEN], now: u64, skew: u64) -> bool {
        usize::try_from(bucket)
            .ok()
            .and_then(|b| self.0.get(b))
            .is_some_and(|lock| {
                lock.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .iter()
                    .any(|s| s.id == *id && s.entry.live(now, skew))
            })
    }

    /// Live entries in all buckets (for tests and sizing checks).
    fn live(&self, now: u64, skew: u64) -> usize {
        self.0
            .iter()
            .map(|b| {
                b.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .iter()
                    .filter(|s| s.entry.live(now, skew))
                    .count()
            })
            .sum()
    }
}

/// The process's tables: each table's registry record ([`Table`]: holders,
/// release time, longest TTL, widest skew) and its buckets.
#[derive(Debug, Default)]
pub struct ProcessTables {
    registry: RwLock<Registry>,
}

#[derive(Debug, Default)]
struct Registry {
    tables: Tables,
    buckets: Vec<(u32, Arc<Buckets>)>,
}

impl Registry {
    fn buckets_of(&self, count: u32) -> Option<&Arc<Buckets>> {
        self.buckets
            .iter()
            .find(|(c, _)| *c == count)
            .map(|(_, b)| b)
    }
}

/// A filter configuration's hold on its table: claims through it write
/// there and into every other live table of the process. Released with
/// [`Holder::release`] when the configuration goes away.
#[derive(Debug)]
pub struct Holder {
    tables: &'static ProcessTables,
    cache: ReplayCache,
    own: Arc<Buckets>,
}

fn write(lock: &RwLock<Registry>) -> std::sync::RwLockWriteGuard<'_, Registry> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

fn read(lock: &RwLock<Registry>) -> std::sync::RwLockReadGuard<'_, Registry> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

impl ProcessTables {
    /// The tables of this process (every worker, every configuration).
    pub fn global() -> &'static ProcessTables {
        static TABLES: OnceLock<ProcessTables> = OnceLock::new();
        TABLES.get_or_init(ProcessTables::default)
    }

    /// Holds the table of `cache`'s layout (created if missing), after
    /// dropping released tables whose nonces are all stale (configuration
    /// time, before traffic).
    pub fn register(&'static self, cache: &ReplayCache, now: u64) -> Holder {
        let mut registry = write(&self.registry);
        let gone = registry.tables.prune(now, cache.skew_seconds());
        registry.buckets.retain(|(c, _)| !gone.contains(c));
        registry.tables.hold(cache);
        let own = match registry.buckets_of(cache.buckets()) {
            Some(b) => Arc::clone(b),
            None => {
                let b = Arc::new(Buckets::new(cache.buckets()));
                registry.buckets.push((cache.buckets(), Arc::clone(&b)));
                b
            }
        };
        Holder {
            tables: self,
            cache: *cache,
            own,
        }
    }

    /// Live entries across every table (tests, sizing checks).
    pub fn live_entries(&self, now: u64) -> usize {
        let registry = read(&self.registry);
        let skew = registry.tables.widest_skew(0);
        registry
            .buckets
            .iter()
            .map(|(_, b)| b.live(now, skew))
            .sum()
    }
}

impl Holder {
    /// Lets go of the table (the configuration is gone). It stays consulted
    /// until every nonce in it is stale.
    pub fn release(self, now: u64) {
        write(&self.tables.registry)
            .tables
            .release(self.cache.buckets(), now);
    }

    /// The layout this holder claims with.
    pub fn cache(&self) -> &ReplayCache {
        &self.cache
    }
}

impl Holder {
    /// The buckets `nonce` maps to, with its slot and id there: this
    /// holder's table first, then every other live table of the process,
    /// under the registry's read lock and the widest registered skew.
    fn each_table<T>(
        &self,
        nonce: &str,
        now: u64,
        mut visit: impl FnMut(&Buckets, u32, [u8; ID_LEN], u64) -> Result<Option<T>, ClaimError>,
    ) -> Result<Option<T>, ClaimError> {
        let registry = read(&self.tables.registry);
        let skew = registry.tables.widest_skew(self.cache.skew_seconds());
        let (bucket, id) = ReplayCache::locate(self.cache.buckets(), nonce);
        if let Some(done) = visit(&self.own, bucket, id, skew)? {
            return Ok(Some(done));
        }
        let others = registry
            .tables
            .0
            .iter()
            .filter(|t: &&Table| t.buckets != self.cache.buckets() && t.live(now, skew));
        for other in others {
            let Some(buckets) = registry.buckets_of(other.buckets) else {
                continue;
            };
            let (bucket, id) = ReplayCache::locate(other.buckets, nonce);
            if let Some(done) = visit(buckets, bucket, id, skew)? {
                return Ok(Some(done));
            }
        }
        Ok(None)
    }
}

impl Nonces for &Holder {
    fn claim(&mut self, nonce: &str, timestamp: u64, now: u64) -> Result<(), ClaimError> {
        let entry = Entry {
            expires: secs(now.saturating_add(self.cache.ttl_seconds())),
            timestamp: secs(timestamp),
        };
        self.each_table(nonce, now, |buckets, bucket, id, skew| {
            buckets
                .insert(bucket, id, entry, now, skew)
                .map(|()| None::<()>)
        })?;
        Ok(())
    }

    fn seen(&mut self, nonce: &str, now: u64) -> Result<bool, ClaimError> {
        let found = self.each_table(nonce, now, |buckets, bucket, id, skew| {
            Ok(buckets.contains(bucket, &id, now, skew).then_some(()))
        })?;
        Ok(found.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::refusal_rate;

    const NOW: u64 = 1_800_000_000;

    /// A process-like registry of its own per test (the global one is
    /// shared by every test thread).
    fn tables() -> &'static ProcessTables {
        Box::leak(Box::default())
    }

    /// A nonce is accepted once; the second claim is a replay, also from
    /// another thread.
    #[test]
    fn second_use_is_a_replay() {
        let t = tables();
        let holder = t.register(&ReplayCache::new(1024, 600, 300), NOW);
        assert_eq!((&holder).claim("nonce-aaaaaaaaaaaaaaaa", NOW, NOW), Ok(()));
        assert_eq!(
            (&holder).claim("nonce-aaaaaaaaaaaaaaaa", NOW, NOW + 1),
            Err(ClaimError::Replayed)
        );
        let h = &holder;
        std::thread::scope(|s| {
            s.spawn(move || {
                assert_eq!(
                    { h }.claim("nonce-aaaaaaaaaaaaaaaa", NOW, NOW + 2),
                    Err(ClaimError::Replayed)
                );
            });
        });
    }

    /// Many threads claim one nonce at once: exactly one wins.
    #[test]
    fn concurrent_claims_of_one_nonce() {
        let t = tables();
        let holder = t.register(&ReplayCache::new(1024, 600, 300), NOW);
        let wins = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for round in 0..200 {
                        let nonce = format!("nonce-race-{round:08}");
                        if (&holder).claim(&nonce, NOW, NOW).is_ok() {
                            wins.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(wins.into_inner(), 200);
    }

    /// Entries expire after the TTL (through the expiry second), unless the
    /// signed timestamp is still acceptable.
    #[test]
    fn expires_after_ttl() {
        let t = tables();
        let holder = t.register(&ReplayCache::new(64, 10, 5), NOW);
        assert_eq!((&holder).claim("nonce-expiry-000001", NOW, NOW), Ok(()));
        assert_eq!(
            (&holder).claim("nonce-expiry-000001", NOW, NOW + 10),
            Err(ClaimError::Replayed)
        );
        assert_eq!(
            (&holder).claim("nonce-expiry-000001", NOW, NOW + 11),
            Ok(())
        );
    }

    /// A full bucket refuses (fail closed) and recovers once entries expire;
    /// memory stays bounded by the capacity.
    #[test]
    fn full_bucket_fails_closed_and_recovers() {
        let t = tables();
        let cache = ReplayCache::new(64, 10, 5);
        assert_eq!(cache.buckets(), 1);
        let holder = t.register(&cache, NOW);
        for i in 0..BUCKET_CAPACITY {
            assert_eq!(
                (&holder).claim(&format!("nonce-full-{i:08}"), NOW, NOW),
                Ok(())
            );
        }
        assert_eq!(
            (&holder).claim("nonce-full-overflow", NOW, NOW),
            Err(ClaimError::Full)
        );
        assert_eq!(t.live_entries(NOW), BUCKET_CAPACITY);
        assert_eq!(
            (&holder).claim("nonce-full-overflow", NOW, NOW + 11),
            Ok(())
        );
        assert_eq!(t.live_entries(NOW + 11), 1);
    }

    /// A configuration change (another capacity) keeps the nonces of the
    /// released table refused until they are stale; then the table goes.
    #[test]
    fn a_released_table_is_consulted_until_its_nonces_are_stale() {
        let t = tables();
        let old = t.register(&ReplayCache::new(128, 20, 10), NOW);
        assert_eq!((&old).claim("nonce-config-change", NOW, NOW), Ok(()));
        let new = t.register(&ReplayCache::new(4096, 20, 10), NOW + 1);
        old.release(NOW + 1);
        assert_eq!(
            (&new).claim("nonce-config-change", NOW, NOW + 2),
            Err(ClaimError::Replayed)
        );
        // A nonce accepted under the new table is also written into the old
        // one while it is live.
        assert_eq!((&new).claim("nonce-new-config-1", NOW + 2, NOW + 2), Ok(()));
        // Long after, a new registration drops the stale table.
        let later = NOW + 100;
        let _again = t.register(&ReplayCache::new(4096, 20, 10), later);
        assert_eq!(read(&t.registry).buckets.len(), 1);
        assert_eq!((&new).claim("nonce-config-change", later, later), Ok(()));
    }

    /// At 75% fill the share of refused nonces is the Erlang B loss of one
    /// bucket, as for the shared-data tables.
    #[test]
    fn refusals_follow_the_loss_formula() {
        let t = tables();
        let buckets = 64u32;
        let capacity = u64::from(buckets) * BUCKET_CAPACITY as u64;
        let ttl = 40u64;
        let fill = 0.75;
        let per_second = ((capacity as f64 * fill) / (ttl + 1) as f64).round() as u64;
        let holder = t.register(&ReplayCache::new(capacity, ttl, ttl / 2), NOW);
        let (warmup, measured) = (2 * ttl * per_second, 200_000u64);
        let mut refused = 0u64;
        for i in 0..warmup + measured {
            let now = NOW + i / per_second;
            match (&holder).claim(&format!("n{i:016x}"), now, now) {
                Ok(()) => {}
                Err(ClaimError::Full) => refused += u64::from(i >= warmup),
                Err(e) => panic!("{e:?}"),
            }
        }
        let rate = refused as f64 / measured as f64;
        let expected = refusal_rate(fill);
        assert!(
            rate > expected * 0.5 && rate < expected * 1.5,
            "refused {rate}, Erlang B {expected}"
        );
    }
}
