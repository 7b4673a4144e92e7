//! Token verification cost, for `bench/token.sh`: for each signing key
//! (a generated P-256 key, and any PEM key files given as arguments), issues
//! a token with one repository grant and measures, in µs per call:
//!
//! * `full`: the whole check without the cache (header, key lookup,
//!   signature, claims) — what the first request with a token pays;
//! * `cached`: `TokenAuth::verify`, what every later request with the same
//!   token pays (SHA-256 of the token and a map lookup).
//!
//! Prints one JSON line per key.

use std::time::Instant;

use registry::auth::access::{Access, Actions, Resource};
use registry::auth::token::{ClaimAccess, TokenAuth, TokenConfig};

fn measure(label: &str, auth: &TokenAuth, iterations: u32) {
    let issued = auth
        .issue(
            "bench",
            vec![ClaimAccess {
                kind: "repository".into(),
                name: "bench/app".into(),
                actions: vec!["pull".into()],
            }],
        )
        .expect("issue");
    let token = issued.token;
    let access = Access {
        resource: Resource::Repository("bench/app".parse().unwrap()),
        actions: Actions::PULL,
    };
    // Warm up, and check it verifies.
    for _ in 0..100 {
        assert!(auth.verify_uncached(&token).unwrap().covers(&access));
    }
    let start = Instant::now();
    for _ in 0..iterations {
        std::hint::black_box(auth.verify_uncached(std::hint::black_box(&token)).unwrap());
    }
    let full = start.elapsed().as_secs_f64() * 1e6 / iterations as f64;
    let cached_iterations = iterations * 20;
    auth.verify(&token).unwrap();
    let start = Instant::now();
    for _ in 0..cached_iterations {
        let v = auth.verify(std::hint::black_box(&token)).unwrap();
        std::hint::black_box(v.covers(&access));
    }
    let cached = start.elapsed().as_secs_f64() * 1e6 / cached_iterations as f64;
    let alg = auth
        .signing_key()
        .map(|k| format!("{:?}", k.algorithm()))
        .unwrap_or_default();
    println!(
        "{{\"key\":\"{label}\",\"alg\":\"{alg}\",\"token_bytes\":{},\"full_us\":{full:.2},\"cached_us\":{cached:.3},\"iterations\":{iterations}}}",
        token.len()
    );
}

fn main() {
    let iterations: u32 = std::env::var("ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut keys = vec![("generated-p256".to_owned(), dir.path().join("p256.pem"))];
    for arg in std::env::args().skip(1) {
        keys.push((arg.clone(), arg.into()));
    }
    for (label, path) in keys {
        let config = TokenConfig {
            signing_key: path,
            ..Default::default()
        };
        let (auth, _) = TokenAuth::open(&config).expect("token auth");
        measure(&label, &auth, iterations);
    }
}
