//! A few Prometheus counters, kept in atomics and rendered by hand in the
//! text exposition format. The label sets are fixed (known routes × a handful
//! of status codes), so there is no map to lock on the request path.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Index,
    ApiCount,
    Health,
    Metrics,
    Other,
}

impl Route {
    const ALL: [Route; 5] = [
        Route::Index,
        Route::ApiCount,
        Route::Health,
        Route::Metrics,
        Route::Other,
    ];

    // Unknown paths share one label so a scanner cannot blow up the series count.
    pub fn from_path(path: &str) -> Self {
        match path {
            "/" => Route::Index,
            "/api/count" => Route::ApiCount,
            "/health" => Route::Health,
            "/metrics" => Route::Metrics,
            _ => Route::Other,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Route::Index => "/",
            Route::ApiCount => "/api/count",
            Route::Health => "/health",
            Route::Metrics => "/metrics",
            Route::Other => "other",
        }
    }
}

/// The status codes this service produces; anything else lands in "other".
const CODES: [&str; 7] = ["200", "400", "404", "405", "500", "503", "other"];
const CODE_SLOTS: usize = CODES.len();

fn code_slot(status: u16) -> usize {
    match status {
        200 => 0,
        400 => 1,
        404 => 2,
        405 => 3,
        500 => 4,
        503 => 5,
        _ => 6,
    }
}

pub struct Metrics {
    requests: [[AtomicU64; CODE_SLOTS]; Route::ALL.len()],
    in_flight: AtomicI64,
    start_time: f64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Default::default(),
            in_flight: AtomicI64::new(0),
            start_time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
        }
    }
}

/// Live values owned elsewhere, sampled when `/metrics` is scraped.
pub struct Snapshot {
    pub redis_up: bool,
    pub redis_errors: u64,
}

impl Metrics {
    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn record(&self, route: Route, status: u16) {
        self.requests[route as usize][code_slot(status)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self, snapshot: &Snapshot) -> String {
        let mut out = String::with_capacity(2048);
        out.push_str(
            "# HELP counter_http_requests_total HTTP requests answered, by route and status code.\n\
             # TYPE counter_http_requests_total counter\n",
        );
        for route in Route::ALL {
            for (slot, code) in CODES.iter().enumerate() {
                let n = self.requests[route as usize][slot].load(Ordering::Relaxed);
                // Zero series for the main routes' success and outage codes
                // are useful (rate() needs them); other zeros are noise.
                if n > 0 || (route != Route::Other && (*code == "200" || *code == "503")) {
                    let _ = writeln!(
                        out,
                        "counter_http_requests_total{{route=\"{}\",code=\"{}\"}} {}",
                        route.label(),
                        code,
                        n
                    );
                }
            }
        }
        let _ = write!(
            out,
            "# HELP counter_http_requests_in_flight HTTP requests being processed.\n\
             # TYPE counter_http_requests_in_flight gauge\n\
             counter_http_requests_in_flight {}\n\
             # HELP counter_redis_up Whether the last Redis command succeeded (1) or not (0).\n\
             # TYPE counter_redis_up gauge\n\
             counter_redis_up {}\n\
             # HELP counter_redis_errors_total Redis commands that failed.\n\
             # TYPE counter_redis_errors_total counter\n\
             counter_redis_errors_total {}\n\
             # HELP counter_build_info Build information.\n\
             # TYPE counter_build_info gauge\n\
             counter_build_info{{version=\"{}\"}} 1\n\
             # HELP process_start_time_seconds Start time of the process since the Unix epoch in seconds.\n\
             # TYPE process_start_time_seconds gauge\n\
             process_start_time_seconds {:.3}\n",
            self.in_flight(),
            u8::from(snapshot.redis_up),
            snapshot.redis_errors,
            env!("CARGO_PKG_VERSION"),
            self.start_time,
        );
        out
    }
}

/// Decrements the in-flight gauge even when the request future is dropped
/// (client gone, shutdown deadline), so the gauge cannot drift upwards.
struct InFlight<'a>(&'a AtomicI64);

impl<'a> InFlight<'a> {
    fn enter(gauge: &'a AtomicI64) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Self(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Middleware: counts every response (404s and 405s included) and tracks
/// the requests in flight.
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let route = Route::from_path(request.uri().path());
    let _in_flight = InFlight::enter(&metrics.in_flight);
    let response = next.run(request).await;
    metrics.record(route, response.status().as_u16());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_by_route_and_code() {
        let m = Metrics::default();
        m.record(Route::Index, 200);
        m.record(Route::Index, 200);
        m.record(Route::Index, 503);
        m.record(Route::from_path("/nope"), 404);
        m.record(Route::Health, 418);
        let text = m.render(&Snapshot {
            redis_up: true,
            redis_errors: 4,
        });
        for line in [
            "counter_http_requests_total{route=\"/\",code=\"200\"} 2",
            "counter_http_requests_total{route=\"/\",code=\"503\"} 1",
            "counter_http_requests_total{route=\"/api/count\",code=\"200\"} 0",
            "counter_http_requests_total{route=\"other\",code=\"404\"} 1",
            "counter_http_requests_total{route=\"/health\",code=\"other\"} 1",
            "counter_http_requests_in_flight 0",
            "counter_redis_up 1",
            "counter_redis_errors_total 4",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(!text.contains("route=\"other\",code=\"200\""));
    }

    #[test]
    fn in_flight_guard_restores_the_gauge() {
        let gauge = AtomicI64::new(0);
        {
            let _a = InFlight::enter(&gauge);
            let _b = InFlight::enter(&gauge);
            assert_eq!(gauge.load(Ordering::Relaxed), 2);
        }
        assert_eq!(gauge.load(Ordering::Relaxed), 0);
    }
}
