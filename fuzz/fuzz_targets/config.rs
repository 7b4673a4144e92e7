//! The config: `Config::load` on a TOML file plus `REGISTRY_*`
//! environment pairs. The bytes up to the first NUL are the file; after it,
//! each line `KEY=value` is a variable (`REGISTRY_` is prefixed when the
//! key lacks it).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use registry::config::Config;

fn path() -> &'static PathBuf {
    static PATH: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = PATH.get_or_init(|| {
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .unwrap();
        let path = dir.path().join("config.toml");
        (dir, path)
    });
    path
}

fuzz_target!(|data: &[u8]| {
    let (toml, env) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(env) = std::str::from_utf8(env) else {
        return;
    };
    let env: Vec<(String, String)> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let k = if k.starts_with("REGISTRY_") {
                k.to_owned()
            } else {
                format!("REGISTRY_{k}")
            };
            (k, v.to_owned())
        })
        // Known slow, and not client bytes: one fuzzed REGISTRY_LOG_LEVEL
        // (a `target[span{field=...` filter) took over 10 s, most likely in
        // tracing-subscriber, which compiles span field values as regexes
        // (docs/fuzzing.md). Such values are left out here.
        .filter(|(k, v)| !(k == "REGISTRY_LOG_LEVEL" && v.contains('{')))
        .collect();
    if let Ok(text) = std::str::from_utf8(toml) {
        let _ = Config::from_toml(text);
    }
    std::fs::write(path(), toml).unwrap();
    if let Ok(config) = Config::load(Some(path()), env.clone()) {
        // A config that loads has listen addresses that parse. Host names
        // resolve when the server binds (as Go's `net.Listen` does), so no
        // lookup here: a fuzzed host name that does not resolve is the
        // bind's error, not the config's (and a fuzzer makes no DNS
        // queries).
        config.listen().unwrap();
        config.metrics_listen().unwrap();
    }
    // The environment alone, on the defaults.
    if let Ok(config) = Config::load(None, env) {
        config.listen().unwrap();
    }
});
