//! Per-upstream counters, in their own Prometheus registry that the
//! metrics listener appends (`metrics::Metrics::add_registry`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabel {
    pub upstream: String,
}

#[derive(Default)]
pub struct ProxyMetrics {
    pub hits: Family<UpstreamLabel, Counter>,
    pub misses: Family<UpstreamLabel, Counter>,
    pub coalesced: Family<UpstreamLabel, Counter>,
    pub upstream_bytes: Family<UpstreamLabel, Counter>,
    pub upstream_errors: Family<UpstreamLabel, Counter>,
    pub stale: Family<UpstreamLabel, Counter>,
    pub evicted: Family<UpstreamLabel, Counter>,
}

impl ProxyMetrics {
    pub fn registry(&self) -> Registry {
        let mut r = Registry::default();
        for (name, help, family) in [
            (
                "registry_proxy_hits",
                "Proxied requests served from the cache",
                &self.hits,
            ),
            (
                "registry_proxy_misses",
                "Proxied requests that needed the upstream",
                &self.misses,
            ),
            (
                "registry_proxy_coalesced",
                "Requests that joined a fetch already in progress instead of asking the upstream",
                &self.coalesced,
            ),
            (
                "registry_proxy_upstream_bytes",
                "Blob bytes received from the upstream",
                &self.upstream_bytes,
            ),
            (
                "registry_proxy_upstream_errors",
                "Upstream requests that failed (unreachable, 5xx, 429, refused, wrong digest)",
                &self.upstream_errors,
            ),
            (
                "registry_proxy_stale",
                "Cached tags served because the upstream could not revalidate them",
                &self.stale,
            ),
            (
                "registry_proxy_evicted",
                "Cached tags removed because nobody pulled them within proxy.ttl",
                &self.evicted,
            ),
        ] {
            r.register(name, help, family.clone());
        }
        r
    }

    pub fn inc(family: &Family<UpstreamLabel, Counter>, upstream: &str) {
        family
            .get_or_create(&UpstreamLabel {
                upstream: upstream.to_owned(),
            })
            .inc();
    }
}
