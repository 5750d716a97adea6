use super::*;

const N1: &str = "nonce-aaaaaaaaaaaaaaaa";
const N2: &str = "nonce-bbbbbbbbbbbbbbbb";
const T0: u64 = 1_800_000_000;

/// A registered table of `entries` with a TTL of twice `skew`.
fn registered(store: &mut MemoryStore, entries: u64, skew: u64) -> ReplayCache {
    let cache = ReplayCache::new(entries, 2 * skew, skew);
    cache.register(store, T0).unwrap();
    cache
}

fn fresh() -> (ReplayCache, MemoryStore) {
    let mut store = MemoryStore::default();
    let cache = registered(&mut store, 1024, 300);
    (cache, store)
}

/// A nonce is accepted once and refused the second time.
#[test]
fn second_use_is_a_replay() {
    let (cache, mut store) = fresh();
    assert_eq!(cache.claim(&mut store, N1, T0, T0), Ok(()));
    assert_eq!(cache.claim(&mut store, N2, T0, T0), Ok(()));
    assert_eq!(
        cache.claim(&mut store, N1, T0, T0 + 1),
        Err(ClaimError::Replayed)
    );
}

/// The nonce is remembered through the last second of its TTL and forgotten
/// after it (once its timestamp is stale too).
#[test]
fn expires_after_ttl() {
    let (cache, mut store) = fresh();
    cache.claim(&mut store, N1, T0 - 300, T0).unwrap();
    assert_eq!(
        cache.claim(&mut store, N1, T0 - 300, T0 + 600),
        Err(ClaimError::Replayed)
    );
    assert_eq!(cache.claim(&mut store, N1, T0 - 300, T0 + 601), Ok(()));
}

/// No replay window at the boundary: TTL = 2 x skew, a request signed at
/// now + skew and accepted at now is still refused at now + 2 x skew, the
/// last second its timestamp is accepted.
#[test]
fn boundary_replay_refused() {
    let (cache, mut store) = fresh();
    let skew = 300;
    cache.claim(&mut store, N1, T0 + skew, T0).unwrap();
    assert_eq!(
        cache.claim(&mut store, N1, T0 + skew, T0 + 2 * skew),
        Err(ClaimError::Replayed)
    );
}

/// A table that was never registered fails closed.
#[test]
fn missing_table_fails_closed() {
    let cache = ReplayCache::new(16, 60, 30);
    let mut store = MemoryStore::default();
    assert!(matches!(
        cache.claim(&mut store, N1, T0, T0),
        Err(ClaimError::Unavailable(_))
    ));
}

/// A bucket never holds more than its capacity; the next nonce fails closed
/// until an entry expires.
#[test]
fn full_bucket_fails_closed_and_recovers_after_expiry() {
    let mut store = MemoryStore::default();
    let cache = registered(&mut store, 1, 30); // one bucket, TTL 60
    for i in 0..BUCKET_CAPACITY {
        cache
            .claim(&mut store, &format!("nonce-{i:016}"), T0, T0)
            .unwrap();
    }
    assert_eq!(
        cache.claim(&mut store, "nonce-overflow-00000", T0, T0),
        Err(ClaimError::Full)
    );
    let (bytes, _) = store.get(&ReplayCache::bucket_key(1, 0)).unwrap().unwrap();
    assert_eq!(bytes.len(), 1 + BUCKET_CAPACITY * ENTRY_BYTES);
    assert_eq!(
        cache.claim(&mut store, "nonce-overflow-00000", T0 + 61, T0 + 61),
        Ok(())
    );
}

/// The table size is rounded up to whole buckets and capped.
#[test]
fn capacity_is_bounded() {
    assert_eq!(ReplayCache::new(1, 1, 1).capacity(), BUCKET_CAPACITY as u64);
    assert_eq!(ReplayCache::new(100_000, 1, 1).buckets(), 1563);
    assert_eq!(
        ReplayCache::new(u64::MAX, 1, 1).capacity(),
        MAX_ENTRIES_LIMIT
    );
}

/// A store whose bucket changes between read and write: the claim retries and
/// still sees the racing writer's nonce.
#[test]
fn concurrent_writer_is_not_overwritten() {
    struct Racing {
        inner: MemoryStore,
        cache: ReplayCache,
        raced: bool,
    }
    impl SharedStore for Racing {
        fn get(&mut self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
            let out = self.inner.get(key);
            if !self.raced && key != REGISTRY_KEY {
                self.raced = true;
                // Another worker claims the same nonce right after our read.
                let cache = self.cache;
                cache.claim(&mut self.inner, N1, T0, T0).unwrap();
            }
            out
        }
        fn set(&mut self, key: &str, v: &[u8], cas: Option<u32>) -> Result<bool, StoreError> {
            self.inner.set(key, v, cas)
        }
    }
    let (cache, inner) = fresh();
    let mut store = Racing {
        inner,
        cache,
        raced: false,
    };
    assert_eq!(
        cache.claim(&mut store, N1, T0, T0),
        Err(ClaimError::Replayed)
    );
}

/// Constant CAS failure ends in a fail-closed error, not a loop.
#[test]
fn endless_contention_fails_closed() {
    struct AlwaysMismatch(MemoryStore);
    impl SharedStore for AlwaysMismatch {
        fn get(&mut self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
            self.0.get(key)
        }
        fn set(&mut self, _: &str, _: &[u8], _: Option<u32>) -> Result<bool, StoreError> {
            Ok(false)
        }
    }
    let (cache, inner) = fresh();
    let err = cache
        .claim(&mut AlwaysMismatch(inner), N1, T0, T0)
        .unwrap_err();
    assert!(matches!(err, ClaimError::Unavailable(_)));
    assert_eq!(err.rejection().reason, Reject::ReplayCacheUnavailable);
}

/// A bucket with a foreign layout is never silently reset.
#[test]
fn corrupt_bucket_fails_closed() {
    let (cache, mut store) = fresh();
    let (bucket, _) = ReplayCache::locate(cache.buckets(), N1);
    let key = ReplayCache::bucket_key(cache.buckets(), bucket);
    store.set(&key, b"\x01garbage", None).unwrap();
    assert!(matches!(
        cache.claim(&mut store, N1, T0, T0),
        Err(ClaimError::Unavailable(_))
    ));
}

/// A new capacity (a config push, or a second filter instance with another
/// size) refuses the nonces the old table accepted, in both directions.
#[test]
fn a_capacity_change_keeps_recent_nonces() {
    let mut store = MemoryStore::default();
    let old = registered(&mut store, 1_000, 300);
    old.claim(&mut store, N1, T0, T0).unwrap();
    let new = registered(&mut store, 100_000, 300);
    assert_ne!(old.buckets(), new.buckets());
    assert_eq!(
        new.claim(&mut store, N1, T0, T0 + 1),
        Err(ClaimError::Replayed)
    );
    // While both are held, a nonce accepted by the new one is refused by the
    // old one too.
    new.claim(&mut store, N2, T0, T0 + 2).unwrap();
    assert_eq!(
        old.claim(&mut store, N2, T0, T0 + 3),
        Err(ClaimError::Replayed)
    );
}

/// After the old instance is done, its table is still consulted until every
/// nonce in it is stale, and dropped after that.
#[test]
fn a_released_table_is_consulted_until_its_nonces_are_stale() {
    let mut store = MemoryStore::default();
    let old = registered(&mut store, 1_000, 300);
    // Signed at the far edge of the window, accepted at the last moment.
    let released = T0 + 50;
    old.claim(&mut store, N1, released + 300, released).unwrap();
    let new = registered(&mut store, 100_000, 300);
    old.unregister(&mut store, released).unwrap();
    // The timestamp is acceptable until released + 600: still refused.
    assert_eq!(
        new.claim(&mut store, N1, released + 300, released + 600),
        Err(ClaimError::Replayed)
    );
    let tables = |store: &mut MemoryStore| {
        let (bytes, _) = store.get(REGISTRY_KEY).unwrap().unwrap();
        Tables::decode(&bytes).unwrap().0.len()
    };
    assert_eq!(tables(&mut store), 2);
    // A later registration drops the table once nothing in it can be live,
    // and frees its entries.
    let later = ReplayCache::new(100_000, 600, 300);
    later.register(&mut store, released + 601).unwrap();
    assert_eq!(tables(&mut store), 1);
    let (bucket, _) = ReplayCache::locate(old.buckets(), N1);
    let (bytes, _) = store
        .get(&ReplayCache::bucket_key(old.buckets(), bucket))
        .unwrap()
        .unwrap();
    assert_eq!(bytes, [FORMAT_VERSION]);
}

/// A held table is never dropped, however old its registration.
#[test]
fn a_config_push_keeps_the_table_held() {
    let mut store = MemoryStore::default();
    let first = registered(&mut store, 1_000, 300);
    let push = registered(&mut store, 1_000, 300);
    first.claim(&mut store, N1, T0, T0).unwrap();
    first.unregister(&mut store, T0).unwrap();
    // The same layout is one table: the pushed config sees the nonce.
    assert_eq!(
        push.claim(&mut store, N1, T0, T0 + 1),
        Err(ClaimError::Replayed)
    );
    ReplayCache::new(5_000, 600, 300)
        .register(&mut store, T0 + 100_000)
        .unwrap();
    let (bytes, _) = store.get(REGISTRY_KEY).unwrap().unwrap();
    assert!(
        Tables::decode(&bytes)
            .unwrap()
            .0
            .iter()
            .any(|t| t.buckets == push.buckets() && t.holders == 1)
    );
}

/// A wider clock skew in a new configuration keeps an old entry live as long
/// as its timestamp is acceptable, beyond the TTL it was stored with.
#[test]
fn a_wider_skew_keeps_entries_live() {
    let mut store = MemoryStore::default();
    let narrow = registered(&mut store, 1_000, 60); // TTL 120
    narrow.claim(&mut store, N1, T0 + 60, T0).unwrap();
    let wide = registered(&mut store, 1_000, 600); // same table, skew 600
    // Past the old TTL (T0 + 120); timestamp T0 + 60 is within 600 s.
    assert_eq!(
        wide.claim(&mut store, N1, T0 + 60, T0 + 500),
        Err(ClaimError::Replayed)
    );
    // A narrow writer does not drop entries the wide reader still needs.
    let (bucket, _) = ReplayCache::locate(narrow.buckets(), N1);
    for i in 0..2_000 {
        let nonce = format!("filler-{i:08}");
        if ReplayCache::locate(narrow.buckets(), &nonce).0 == bucket {
            narrow
                .claim(&mut store, &nonce, T0 + 400, T0 + 400)
                .unwrap();
            break;
        }
    }
    assert_eq!(
        wide.claim(&mut store, N1, T0 + 60, T0 + 600),
        Err(ClaimError::Replayed)
    );
}

/// Creating the buckets at configuration time never wipes one that another
/// worker created, and used, since we saw it missing.
#[test]
fn creating_a_bucket_never_wipes_a_live_one() {
    struct CreatedMeanwhile {
        inner: MemoryStore,
        other: ReplayCache,
        /// The bucket N1 lives in.
        target: String,
        done: bool,
    }
    impl SharedStore for CreatedMeanwhile {
        fn get(&mut self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
            let out = self.inner.get(key);
            if !self.done && key == self.target {
                // Right after we saw the bucket missing, another worker
                // configures and serves a request.
                self.done = true;
                self.other.register(&mut self.inner, T0).unwrap();
                self.other.claim(&mut self.inner, N1, T0, T0).unwrap();
            }
            out
        }
        fn set(&mut self, key: &str, v: &[u8], cas: Option<u32>) -> Result<bool, StoreError> {
            self.inner.set(key, v, cas)
        }
    }
    let cache = ReplayCache::new(1_000, 600, 300);
    assert_eq!(cache.buckets(), 16);
    let target = ReplayCache::bucket_key(cache.buckets(), ReplayCache::locate(16, N1).0);
    let mut store = CreatedMeanwhile {
        inner: MemoryStore::default(),
        other: cache,
        target,
        done: false,
    };
    cache.register(&mut store, T0).unwrap();
    assert!(store.done);
    assert_eq!(
        cache.claim(&mut store.inner, N1, T0, T0 + 1),
        Err(ClaimError::Replayed)
    );
}

fn refused_share(buckets: u32, fill: f64, measured: u64) -> f64 {
    let refused = steady_state_refusals(buckets, fill, measured).unwrap();
    refused as f64 / measured as f64
}

/// The table behaves as the model the sizing rule rests on: at 75% fill the
/// refused share matches the Erlang B prediction.
#[test]
fn refusals_follow_the_loss_formula() {
    let predicted = refusal_rate(0.75);
    assert!((4.0e-3..6.0e-3).contains(&predicted), "{predicted}");
    let measured = refused_share(40, 0.75, 150_000);
    assert!(
        (measured - predicted).abs() < 0.3 * predicted,
        "measured {measured}, predicted {predicted}"
    );
}

/// At the documented sizing (capacity = 2 × live nonces) the predicted
/// refusal rate is below 1e-6 and none of 200,000 uniformly random nonces is
/// refused.
#[test]
fn documented_sizing_refuses_below_one_in_a_million() {
    assert!(refusal_rate(1.0 / SIZING_FACTOR) < 1e-6);
    assert_eq!(refused_share(40, 1.0 / SIZING_FACTOR, 200_000), 0.0);
}
