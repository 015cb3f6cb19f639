//! `GET /metrics`: the Prometheus text format (version 0.0.4), rendered from the
//! server's own counters and the cache's [`Stats`](tokencache::twolevel::Stats).
//!
//! Rendered here rather than through an exporter crate: every number already lives in
//! an atomic (ours) or in the cache's stats snapshot, so a scrape is one pass over
//! them, and the request path pays only a few relaxed atomic increments.
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `tokencache_http_requests_total` | counter | `route`, `status` |
//! | `tokencache_http_request_duration_seconds` | histogram | `route` |
//! | `tokencache_tokens_total` | counter | `api`, `flow` (`app`, `obo`), `outcome` (`cache`, `provider`, or the error code) |
//! | `tokencache_provider_requests_total` | counter | `api` |
//! | `tokencache_provider_requests_in_flight` | gauge | |
//! | `tokencache_hits_total`, `tokencache_misses_total` | counter | `level` (`l1`, `l2`) |
//! | `tokencache_l2_errors_total` | counter | `class` |
//! | `tokencache_l2_breaker_state` | gauge (0 closed, 1 open, 2 half-open) | |
//! | `tokencache_recovery_queue_depth` | gauge | |
//! | `tokencache_recovery_queued_total`, `..._applied_total`, `..._dropped_total` | counter | (`reason`) |

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokencache::TokenCache;

/// The routes requests are counted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// `GET /v1/authorization-header/{api}`.
    AuthorizationHeader,
    /// `POST /v1/sign-out`.
    SignOut,
    /// `POST /v1/backchannel-logout`.
    BackchannelLogout,
    /// `GET /v1/validate`.
    Validate,
    /// `GET /healthz`.
    Healthz,
    /// `GET /readyz`.
    Readyz,
    /// `GET /metrics`.
    Metrics,
    /// `ANY /v1/downstream/{api}[/{path…}]` (issue 23).
    Downstream,
    /// `GET /Validate` (Microsoft's sidecar).
    CompatValidate,
    /// `GET /AuthorizationHeader[Unauthenticated]/{apiName}` (Microsoft's sidecar).
    CompatHeader,
    /// `POST /DownstreamApi[Unauthenticated]/{apiName}` (Microsoft's sidecar).
    CompatDownstream,
    /// `GET /openapi/v1.json`.
    OpenApi,
    /// Anything else (404, 405).
    Other,
}

const ROUTES: [Route; 13] = [
    Route::AuthorizationHeader,
    Route::SignOut,
    Route::BackchannelLogout,
    Route::Validate,
    Route::Healthz,
    Route::Readyz,
    Route::Metrics,
    Route::Downstream,
    Route::CompatValidate,
    Route::CompatHeader,
    Route::CompatDownstream,
    Route::OpenApi,
    Route::Other,
];

impl Route {
    /// The route of a request path.
    pub(crate) fn of(path: &str) -> Route {
        if path.starts_with("/v1/authorization-header/") {
            Route::AuthorizationHeader
        } else if path.starts_with("/v1/downstream/") {
            Route::Downstream
        } else if path.starts_with("/AuthorizationHeader/")
            || path.starts_with("/AuthorizationHeaderUnauthenticated/")
        {
            Route::CompatHeader
        } else if path.starts_with("/DownstreamApi/")
            || path.starts_with("/DownstreamApiUnauthenticated/")
        {
            Route::CompatDownstream
        } else {
            match path {
                "/v1/sign-out" => Route::SignOut,
                "/v1/backchannel-logout" => Route::BackchannelLogout,
                "/v1/validate" => Route::Validate,
                "/healthz" => Route::Healthz,
                "/readyz" => Route::Readyz,
                "/metrics" => Route::Metrics,
                "/Validate" => Route::CompatValidate,
                "/openapi/v1.json" => Route::OpenApi,
                _ => Route::Other,
            }
        }
    }

    fn label(self) -> &'static str {
        match self {
            Route::AuthorizationHeader => "/v1/authorization-header/{api}",
            Route::SignOut => "/v1/sign-out",
            Route::BackchannelLogout => "/v1/backchannel-logout",
            Route::Validate => "/v1/validate",
            Route::Healthz => "/healthz",
            Route::Readyz => "/readyz",
            Route::Metrics => "/metrics",
            Route::Downstream => "/v1/downstream/{api}",
            Route::CompatValidate => "/Validate",
            Route::CompatHeader => "/AuthorizationHeader/{apiName}",
            Route::CompatDownstream => "/DownstreamApi/{apiName}",
            Route::OpenApi => "/openapi/v1.json",
            Route::Other => "other",
        }
    }

    /// Microsoft's routes: errors are problem details.
    pub(crate) fn is_compat(self) -> bool {
        matches!(
            self,
            Route::CompatValidate | Route::CompatHeader | Route::CompatDownstream
        )
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Upper bounds of the latency histogram buckets, seconds.
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// One route's latency histogram (non-cumulative bucket counts; `+Inf` is the total).
#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            d.as_micros().min(u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
    }
}

/// Statuses counted one by one; any other is counted as its class (`2xx`, ...).
const STATUSES: [u16; 16] = [
    200, 202, 400, 401, 403, 404, 405, 413, 415, 421, 431, 500, 502, 503, 504, 429,
];

/// The counters of one API: tokens by outcome.
#[derive(Default)]
struct ApiCounters {
    cache: AtomicU64,
    provider: AtomicU64,
    /// Failures by error code (rare: a lock is fine).
    errors: Mutex<BTreeMap<&'static str, u64>>,
}

/// What the server counts itself.
pub(crate) struct ServeMetrics {
    histograms: [Histogram; ROUTES.len()],
    statuses: [[AtomicU64; STATUSES.len() + 5]; ROUTES.len()],
    apis: BTreeMap<String, (&'static str, ApiCounters)>,
}

/// What a token request ended with.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    /// Served from the cache.
    Cache,
    /// Acquired from the provider.
    Provider,
    /// The error code answered.
    Error(&'static str),
}

impl ServeMetrics {
    /// Counters for these APIs (name, `on_behalf_of`).
    pub(crate) fn new<'a>(apis: impl Iterator<Item = (&'a str, bool)>) -> Self {
        Self {
            histograms: Default::default(),
            statuses: Default::default(),
            apis: apis
                .map(|(name, obo)| {
                    let flow = if obo { "obo" } else { "app" };
                    (name.to_string(), (flow, ApiCounters::default()))
                })
                .collect(),
        }
    }

    /// One answered request.
    pub(crate) fn request(&self, route: Route, status: u16, took: Duration) {
        self.histograms[route.index()].observe(took);
        let slot = STATUSES
            .iter()
            .position(|s| *s == status)
            .unwrap_or_else(|| STATUSES.len() + usize::from(status / 100).clamp(1, 5) - 1);
        self.statuses[route.index()][slot].fetch_add(1, Ordering::Relaxed);
    }

    /// One token request of `api`.
    pub(crate) fn token(&self, api: &str, outcome: Outcome) {
        let Some((_, c)) = self.apis.get(api) else {
            return;
        };
        match outcome {
            Outcome::Cache => {
                c.cache.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Provider => {
                c.provider.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Error(code) => {
                let mut m = c.errors.lock().unwrap_or_else(|p| p.into_inner());
                *m.entry(code).or_default() += 1;
            }
        }
    }

    /// The whole exposition: ours, the providers', the cache's.
    pub(crate) fn render(
        &self,
        cache: &TokenCache,
        provider_requests: &[(&str, u64)],
        in_flight: usize,
    ) -> String {
        let mut o = String::with_capacity(8 * 1024);
        self.render_http(&mut o);
        header(
            &mut o,
            "tokencache_tokens_total",
            "counter",
            "Token requests answered, by API, flow and outcome (cache, provider, or the error code).",
        );
        for (api, (flow, c)) in &self.apis {
            let api = escape(api);
            let line = |o: &mut String, outcome: &str, n: u64| {
                let _ = writeln!(
                    o,
                    "tokencache_tokens_total{{api=\"{api}\",flow=\"{flow}\",outcome=\"{outcome}\"}} {n}"
                );
            };
            line(&mut o, "cache", c.cache.load(Ordering::Relaxed));
            line(&mut o, "provider", c.provider.load(Ordering::Relaxed));
            for (code, n) in c.errors.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                line(&mut o, code, *n);
            }
        }
        header(
            &mut o,
            "tokencache_provider_requests_total",
            "counter",
            "Token requests sent to the provider, by API.",
        );
        for (api, n) in provider_requests {
            let _ = writeln!(
                o,
                "tokencache_provider_requests_total{{api=\"{}\"}} {n}",
                escape(api)
            );
        }
        header(
            &mut o,
            "tokencache_provider_requests_in_flight",
            "gauge",
            "Token requests to providers in flight now (bounded by max_provider_requests).",
        );
        let _ = writeln!(o, "tokencache_provider_requests_in_flight {in_flight}");
        render_cache(&mut o, cache);
        o
    }

    fn render_http(&self, o: &mut String) {
        header(
            o,
            "tokencache_http_requests_total",
            "counter",
            "HTTP requests answered, by route and status.",
        );
        for route in ROUTES {
            for (slot, n) in self.statuses[route.index()].iter().enumerate() {
                let n = n.load(Ordering::Relaxed);
                if n == 0 {
                    continue;
                }
                let status = match STATUSES.get(slot) {
                    Some(s) => s.to_string(),
                    None => format!("{}xx", slot - STATUSES.len() + 1),
                };
                let _ = writeln!(
                    o,
                    "tokencache_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                    route.label()
                );
            }
        }
        header(
            o,
            "tokencache_http_request_duration_seconds",
            "histogram",
            "Time from reading a request to its answer, by route.",
        );
        for route in ROUTES {
            let h = &self.histograms[route.index()];
            let label = route.label();
            let mut cumulative = 0;
            for (i, b) in BUCKETS.iter().enumerate() {
                cumulative += h.buckets[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    o,
                    "tokencache_http_request_duration_seconds_bucket{{route=\"{label}\",le=\"{b}\"}} {cumulative}"
                );
            }
            let count = h.count.load(Ordering::Relaxed);
            let _ = writeln!(
                o,
                "tokencache_http_request_duration_seconds_bucket{{route=\"{label}\",le=\"+Inf\"}} {count}"
            );
            let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                o,
                "tokencache_http_request_duration_seconds_sum{{route=\"{label}\"}} {sum}"
            );
            let _ = writeln!(
                o,
                "tokencache_http_request_duration_seconds_count{{route=\"{label}\"}} {count}"
            );
        }
    }
}

/// The cache's counters and gauges.
fn render_cache(o: &mut String, cache: &TokenCache) {
    let s = cache.stats();
    let two = cache.two_level();
    header(
        o,
        "tokencache_hits_total",
        "counter",
        "Reads answered, by cache level.",
    );
    let _ = writeln!(o, "tokencache_hits_total{{level=\"l1\"}} {}", s.l1_hits);
    let _ = writeln!(o, "tokencache_hits_total{{level=\"l2\"}} {}", s.l2_hits);
    header(
        o,
        "tokencache_misses_total",
        "counter",
        "Reads a cache level could not answer.",
    );
    let _ = writeln!(o, "tokencache_misses_total{{level=\"l1\"}} {}", s.l1_misses);
    let _ = writeln!(o, "tokencache_misses_total{{level=\"l2\"}} {}", s.l2_misses);
    header(
        o,
        "tokencache_l2_errors_total",
        "counter",
        "Failed L2 calls, by class.",
    );
    let e = s.l2_errors_by_class;
    for (class, n) in [
        ("connection", e.connection),
        ("timeout", e.timeout),
        ("server", e.server),
        ("bad_data", e.bad_data),
        ("config", e.config),
    ] {
        let _ = writeln!(o, "tokencache_l2_errors_total{{class=\"{class}\"}} {n}");
    }
    let simple: [(&str, &str, &str, f64); 7] = [
        (
            "tokencache_l2_skipped_total",
            "counter",
            "L2 calls skipped because the breaker was open.",
            s.l2_skipped as f64,
        ),
        (
            "tokencache_l2_breaker_state",
            "gauge",
            "The L2 circuit breaker: 0 closed, 1 open, 2 half-open.",
            two.breaker_state().as_gauge(),
        ),
        (
            "tokencache_l2_breaker_opened_total",
            "counter",
            "Times the L2 circuit breaker opened.",
            s.breaker_opened as f64,
        ),
        (
            "tokencache_recovery_queue_depth",
            "gauge",
            "Keys waiting in the recovery queue for L2.",
            two.queue_depth() as f64,
        ),
        (
            "tokencache_recovery_queued_total",
            "counter",
            "Writes and removals queued for L2.",
            s.queued as f64,
        ),
        (
            "tokencache_recovery_applied_total",
            "counter",
            "Queued changes L2 took after recovering.",
            s.recovered as f64,
        ),
        (
            "tokencache_backplane_invalidations_total",
            "counter",
            "L1 entries dropped or users revoked on another replica's message.",
            s.invalidated as f64,
        ),
    ];
    for (name, kind, help, v) in simple {
        header(o, name, kind, help);
        let _ = writeln!(o, "{name} {v}");
    }
    header(
        o,
        "tokencache_recovery_dropped_total",
        "counter",
        "Queued changes not applied, by reason.",
    );
    for (reason, n) in [
        ("overflow", s.dropped_overflow),
        ("superseded", s.superseded),
        ("expired", s.expired),
    ] {
        let _ = writeln!(
            o,
            "tokencache_recovery_dropped_total{{reason=\"{reason}\"}} {n}"
        );
    }
}

fn header(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}");
    let _ = writeln!(o, "# TYPE {name} {kind}");
}

/// A label value escaped for the text format.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_buckets_land_where_they_belong() {
        let m = ServeMetrics::new([("orders", false)].into_iter());
        m.request(Route::Healthz, 200, Duration::from_micros(50));
        m.request(Route::Healthz, 418, Duration::from_secs(9));
        m.token("orders", Outcome::Error("invalid_scope"));
        m.token("unknown", Outcome::Cache);
        let mut o = String::new();
        m.render_http(&mut o);
        assert!(o.contains("tokencache_http_requests_total{route=\"/healthz\",status=\"200\"} 1"));
        assert!(o.contains("tokencache_http_requests_total{route=\"/healthz\",status=\"4xx\"} 1"));
        assert!(o.contains(
            "tokencache_http_request_duration_seconds_bucket{route=\"/healthz\",le=\"0.0001\"} 1"
        ));
        assert!(o.contains(
            "tokencache_http_request_duration_seconds_bucket{route=\"/healthz\",le=\"5\"} 1"
        ));
        assert!(o.contains(
            "tokencache_http_request_duration_seconds_bucket{route=\"/healthz\",le=\"+Inf\"} 2"
        ));
        assert_eq!(
            Route::of("/v1/authorization-header/x"),
            Route::AuthorizationHeader
        );
        assert_eq!(Route::of("/nope"), Route::Other);
        assert_eq!(escape("a\"b\\"), "a\\\"b\\\\");
    }
}
