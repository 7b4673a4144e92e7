//! Runs one test in a process of its own. Every suite shares this test
//! binary, so a test that changes process-wide state (the open-file limit)
//! or measures the whole process (its resident memory) would see, or upset,
//! the tests running beside it: it reruns itself alone in a child process of
//! this binary and asserts that child's result.

use std::process::Command;

const ALONE: &str = "REGISTRY_TEST_ALONE";

/// In the parent: runs `test` (its full path, `module::name`) alone in a
/// child process, fails if it failed, and returns `false` (the caller
/// returns). In that child: returns `true` and the caller runs its body.
pub fn in_own_process(test: &str) -> bool {
    if std::env::var(ALONE).as_deref() == Ok(test) {
        return true;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new(exe)
        .args([test, "--exact", "--include-ignored", "--nocapture"])
        .env(ALONE, test)
        .output()
        .expect("rerun the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{test} failed in its own process");
    // A filter that matched nothing also exits 0: make sure it ran.
    assert!(stdout.contains("1 passed"), "{test} did not run: {stdout}");
    false
}
