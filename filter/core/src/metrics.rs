//! The filter's counters and gauges: their names and when each moves. Both
//! hosts define exactly these (by index, [`Counter::ALL`]) and bump what the
//! [`crate::stream`] state machine reports, so the numbers mean the same on
//! either host. Each host's stats scope adds its own prefix: `wasmcustom.`
//! for the proxy-wasm filter, `dynamicmodulescustom.` for the native module.
//!
//! Envoy's admin `/stats` shows the full names. Its Prometheus output
//! (`/stats/prometheus`) shows them with the outcome code, key slot,
//! fingerprint and format cut out as labels, by the [`STATS_TAGS`] every
//! rendered bootstrap carries: `edge_hmac_rejected{code="stale_timestamp"}`,
//! `edge_hmac_key{slot="current",fingerprint="0a1b2c3d"}`. [`Counter::prometheus`]
//! and [`key_gauge_prometheus`] say what each becomes; the alerts and the
//! dashboard are written against those.

use crate::scheme::{Format, KeyUsed, Reject};

/// The part every name starts with.
pub const PREFIX: &str = "edge_hmac.";

/// A counter of the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// A request fully verified (headers and body).
    Verified,
    /// …with the key in this slot (`verified_<slot>_key`).
    VerifiedKey(KeyUsed),
    /// …in this wire format (`verified_format.<format>`).
    VerifiedFormat(Format),
    /// A verified request whose body was signed `UNSIGNED-PAYLOAD`.
    VerifiedUnsignedPayload,
    /// A verified upgrade handshake (websocket, `CONNECT`).
    VerifiedUpgrade,
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
pub const COUNTERS: usize = 11 + KeyUsed::ALL.len() + Format::ALL.len() + Reject::ALL.len();

/// Where the fixed counters start in [`Counter::ALL`]: after `verified`,
/// one per key slot and one per format.
const FIXED: usize = 1 + KeyUsed::ALL.len() + Format::ALL.len();

impl Counter {
    /// Every counter, at the index [`Counter::index`] gives it.
    pub const ALL: [Counter; COUNTERS] = {
        let mut all = [Counter::Verified; COUNTERS];
        let mut i = 0;
        while i < KeyUsed::ALL.len() {
            all[1 + i] = Counter::VerifiedKey(KeyUsed::ALL[i]);
            i += 1;
        }
        let mut f = 0;
        while f < Format::ALL.len() {
            all[1 + KeyUsed::ALL.len() + f] = Counter::VerifiedFormat(Format::ALL[f]);
            f += 1;
        }
        all[FIXED] = Counter::VerifiedUnsignedPayload;
        all[FIXED + 1] = Counter::VerifiedUpgrade;
        all[FIXED + 2] = Counter::Exempt;
        all[FIXED + 3] = Counter::CorsPreflight;
        all[FIXED + 4] = Counter::NonceCacheFull;
        all[FIXED + 5] = Counter::InternalError;
        all[FIXED + 6] = Counter::NonceStoreClaim;
        all[FIXED + 7] = Counter::NonceStoreReplayed;
        all[FIXED + 8] = Counter::NonceStoreUnavailable;
        all[FIXED + 9] = Counter::NonceStoreFallback;
        let mut j = 0;
        while j < Reject::ALL.len() {
            all[FIXED + 10 + j] = Counter::Rejected(Reject::ALL[j]);
            j += 1;
        }
        all
    };

    /// Its position in [`Counter::ALL`] (hosts keep their metric ids in an
    /// array in that order).
    pub fn index(self) -> usize {
        match self {
            Counter::Verified => 0,
            // KeyUsed's discriminant is its index in KeyUsed::ALL.
            Counter::VerifiedKey(slot) => 1 + slot as usize,
            Counter::VerifiedFormat(format) => {
                1 + KeyUsed::ALL.len()
                    + Format::ALL
                        .iter()
                        .position(|f| *f == format)
                        .unwrap_or_default()
            }
            Counter::VerifiedUnsignedPayload => FIXED,
            Counter::VerifiedUpgrade => FIXED + 1,
            Counter::Exempt => FIXED + 2,
            Counter::CorsPreflight => FIXED + 3,
            Counter::NonceCacheFull => FIXED + 4,
            Counter::InternalError => FIXED + 5,
            Counter::NonceStoreClaim => FIXED + 6,
            Counter::NonceStoreReplayed => FIXED + 7,
            Counter::NonceStoreUnavailable => FIXED + 8,
            Counter::NonceStoreFallback => FIXED + 9,
            Counter::Rejected(reason) => {
                FIXED
                    + 10
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
            Counter::VerifiedFormat(format) => format!("verified_format.{}", format.name()),
            Counter::VerifiedUnsignedPayload => "verified_unsigned_payload".to_owned(),
            Counter::VerifiedUpgrade => "verified_upgrade".to_owned(),
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

/// The `wasmcustom.` / `dynamicmodulescustom.` part of every regex below:
/// the stats namespace each host registers (Envoy leaves it, and its own
/// `envoy_` prefix, out of the Prometheus names).
macro_rules! namespaces {
    () => {
        r"^(?:wasmcustom|dynamicmodulescustom)\.edge_hmac\."
    };
}

/// One label Envoy cuts out of a stat name: `config.metrics.v3.TagSpecifier`.
/// The regex's first capture group is removed from the name, its second is
/// the label's value (Envoy's rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsTag {
    /// The label's name.
    pub name: &'static str,
    /// The RE2 regex matched against the full stat name.
    pub regex: &'static str,
}

/// The labels of the filter's metrics, for `stats_config.stats_tags` of
/// every bootstrap the kit renders (local and Envoy Gateway's).
pub const STATS_TAGS: [StatsTag; 4] = [
    // rejected.<code>
    StatsTag {
        name: "code",
        regex: concat!(namespaces!(), r"rejected(\.([a-z0-9_]+))$"),
    },
    // verified_<slot>_key and key.<slot>.<fingerprint> (one tag name may
    // appear once, so one regex takes the slot out of both).
    StatsTag {
        name: "slot",
        regex: concat!(
            namespaces!(),
            r"(?:verified|key)([_.](current|previous|pending))(?:_key|\.[0-9a-f]+)$"
        ),
    },
    // key.<slot>.<fingerprint>
    StatsTag {
        name: "fingerprint",
        regex: concat!(
            namespaces!(),
            r"key\.(?:current|previous|pending)(\.([0-9a-f]+))$"
        ),
    },
    // verified_format.<format>
    StatsTag {
        name: "format",
        regex: concat!(namespaces!(), r"verified_format(\.([a-z0-9]+))$"),
    },
];

/// The runtime flag that makes Envoy register the native module's stats
/// namespace the way the proxy-wasm host registers `wasmcustom`: without
/// it, Envoy 1.39/1.40 show the module's metrics as
/// `envoy_dynamicmodulescustom_edge_hmac_*` in Prometheus output, with it
/// as `edge_hmac_*`, the names the wasm filter has. Rendered bootstraps set
/// it to `true`.
pub const STRIP_NAMESPACE_RUNTIME_KEY: &str =
    "envoy.reloadable_features.dynamic_modules_strip_custom_stat_prefix";

/// A metric as Envoy's Prometheus output shows it under [`STATS_TAGS`]:
/// its name and its labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromMetric {
    /// The metric (family) name, e.g. `edge_hmac_rejected`.
    pub name: String,
    /// Its labels, e.g. `[("code", "stale_timestamp")]`.
    pub labels: Vec<(&'static str, String)>,
}

/// Prometheus names of the filter's metrics (what alerts and dashboards use).
pub mod prom {
    /// Requests fully verified.
    pub const VERIFIED: &str = "edge_hmac_verified";
    /// …by key slot (label `slot`).
    pub const VERIFIED_KEY: &str = "edge_hmac_verified_key";
    /// …by wire format (label `format`).
    pub const VERIFIED_FORMAT: &str = "edge_hmac_verified_format";
    /// Verified bodies signed `UNSIGNED-PAYLOAD`.
    pub const VERIFIED_UNSIGNED_PAYLOAD: &str = "edge_hmac_verified_unsigned_payload";
    /// Verified upgrades.
    pub const VERIFIED_UPGRADE: &str = "edge_hmac_verified_upgrade";
    /// Requests refused, by outcome code (label `code`).
    pub const REJECTED: &str = "edge_hmac_rejected";
    /// Requests on exempt paths.
    pub const EXEMPT: &str = "edge_hmac_exempt";
    /// CORS preflights let through.
    pub const CORS_PREFLIGHT: &str = "edge_hmac_cors_preflight";
    /// Nonces refused because the replay table's bucket was full.
    pub const NONCE_CACHE_FULL: &str = "edge_hmac_nonce_cache_full";
    /// Host failures.
    pub const INTERNAL_ERROR: &str = "edge_hmac_internal_error";
    /// Claims sent to the nonce store.
    pub const NONCE_STORE_CLAIMS: &str = "edge_hmac_nonce_store_claims";
    /// Replays the nonce store caught.
    pub const NONCE_STORE_REPLAYED: &str = "edge_hmac_nonce_store_replayed";
    /// Claims the nonce store did not answer.
    pub const NONCE_STORE_UNAVAILABLE: &str = "edge_hmac_nonce_store_unavailable";
    /// Nonces kept only locally because the store was unavailable.
    pub const NONCE_STORE_FALLBACK: &str = "edge_hmac_nonce_store_fallback";
    /// Keys held (labels `slot`, `fingerprint`), above zero while held.
    pub const KEY: &str = "edge_hmac_key";
}

impl Counter {
    /// How Envoy's Prometheus output shows this counter.
    pub fn prometheus(self) -> PromMetric {
        let plain = |name: &str| PromMetric {
            name: name.to_owned(),
            labels: Vec::new(),
        };
        let labelled = |name: &str, label: &'static str, value: &str| PromMetric {
            name: name.to_owned(),
            labels: vec![(label, value.to_owned())],
        };
        match self {
            Counter::Verified => plain(prom::VERIFIED),
            Counter::VerifiedKey(slot) => labelled(prom::VERIFIED_KEY, "slot", slot.slot()),
            Counter::VerifiedFormat(f) => labelled(prom::VERIFIED_FORMAT, "format", f.name()),
            Counter::VerifiedUnsignedPayload => plain(prom::VERIFIED_UNSIGNED_PAYLOAD),
            Counter::VerifiedUpgrade => plain(prom::VERIFIED_UPGRADE),
            Counter::Exempt => plain(prom::EXEMPT),
            Counter::CorsPreflight => plain(prom::CORS_PREFLIGHT),
            Counter::NonceCacheFull => plain(prom::NONCE_CACHE_FULL),
            Counter::InternalError => plain(prom::INTERNAL_ERROR),
            Counter::NonceStoreClaim => plain(prom::NONCE_STORE_CLAIMS),
            Counter::NonceStoreReplayed => plain(prom::NONCE_STORE_REPLAYED),
            Counter::NonceStoreUnavailable => plain(prom::NONCE_STORE_UNAVAILABLE),
            Counter::NonceStoreFallback => plain(prom::NONCE_STORE_FALLBACK),
            Counter::Rejected(reason) => labelled(prom::REJECTED, "code", reason.code()),
        }
    }
}

/// How Envoy's Prometheus output shows [`key_gauge_name`]`(slot, fingerprint)`.
pub fn key_gauge_prometheus(slot: KeyUsed, fingerprint: &str) -> PromMetric {
    PromMetric {
        name: prom::KEY.to_owned(),
        labels: vec![
            ("slot", slot.slot().to_owned()),
            ("fingerprint", fingerprint.to_owned()),
        ],
    }
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
        assert_eq!(
            Counter::VerifiedFormat(Format::Rfc9421).name(),
            "edge_hmac.verified_format.rfc9421"
        );
    }

    /// Envoy's tag extraction, as its docs define it: each regex is matched
    /// against the full name; the first group is cut out, the second is the
    /// value; the remainder, without the stats namespace, becomes the
    /// Prometheus name (dots to underscores).
    fn envoy_prometheus(full: &str) -> PromMetric {
        let mut cut = vec![false; full.len()];
        let mut labels = Vec::new();
        for tag in STATS_TAGS {
            let re = regex::Regex::new(tag.regex).unwrap();
            if let Some(c) = re.captures(full) {
                let remove = c.get(1).unwrap();
                let value = c.get(2).unwrap_or(remove);
                cut[remove.range()].iter_mut().for_each(|b| *b = true);
                labels.push((tag.name, value.as_str().to_owned()));
            }
        }
        let kept: String = full
            .char_indices()
            .filter(|(i, _)| !cut[*i])
            .map(|(_, ch)| ch)
            .collect();
        let name = kept
            .strip_prefix("wasmcustom.")
            .or_else(|| kept.strip_prefix("dynamicmodulescustom."))
            .unwrap()
            .replace('.', "_");
        PromMetric { name, labels }
    }

    /// Under both hosts' namespaces, every counter and key gauge gets exactly
    /// the Prometheus name and labels the alerts and the dashboard query,
    /// and no two metrics collapse into one series.
    #[test]
    fn stats_tags_give_the_documented_prometheus_names() {
        let mut series = std::collections::HashSet::new();
        for ns in ["wasmcustom", "dynamicmodulescustom"] {
            for c in Counter::ALL {
                let got = envoy_prometheus(&format!("{ns}.{}", c.name()));
                assert_eq!(got, c.prometheus(), "{c:?} under {ns}");
                assert!(
                    !got.name.contains("__") && !got.name.ends_with('_'),
                    "{got:?}"
                );
                if ns == "wasmcustom" {
                    assert!(series.insert(format!("{got:?}")), "{c:?} collides");
                }
            }
            for slot in KeyUsed::ALL {
                let full = format!("{ns}.{}", key_gauge_name(slot, "0a1b2c3d"));
                assert_eq!(
                    envoy_prometheus(&full),
                    key_gauge_prometheus(slot, "0a1b2c3d")
                );
            }
        }
        // The plain counters' family names never take a label from another.
        assert!(!series.contains(&format!(
            "{:?}",
            PromMetric {
                name: prom::VERIFIED.into(),
                labels: vec![("format", "v1".into())]
            }
        )));
    }
}
