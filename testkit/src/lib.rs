//! What the test suites of more than one package share (a dev-dependency
//! of `registry` and `counter-app`, never of a binary): thin helpers over
//! the docker CLI with a guard that removes what a test created
//! (`docker`), the registry's FROM scratch image (`registry_image`), and
//! the polling loop they wait with.

pub mod docker;
pub mod registry_image;

use std::time::{Duration, Instant};

/// Calls `check` until it returns a value or `timeout` passes (then
/// panics, naming `what`).
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
