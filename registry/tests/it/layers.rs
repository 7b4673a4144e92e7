//! The layer rules of `registry/src` (docs/architecture.md, "Layers"):
//! every top-level module sits in one layer and names (`crate::<module>`)
//! only modules of lower layers, so no module cycle can form. A new module
//! must be placed here, which is the point: its place is decided, not
//! drifted into.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Bottom to top. A module may use modules of the layers before its own,
/// never its own layer's or later ones. `crate::App` (lib.rs, the wiring of
/// every part) may be named from the domain layer up.
const LAYERS: &[&[&str]] = &[
    // The vocabulary: the OCI model, the one glob matcher, the lingering
    // close of a TCP stream, the loop of periodic background work.
    &["oci", "glob", "linger", "periodic"],
    // The protocol's words: routes, error codes, body helpers, Warning.
    &["protocol"],
    // Configuration as plain data.
    &["config"],
    // The store: key layout, blobs, manifests, tags, uploads, drivers, and
    // the whole-store jobs beside it (`storage::maintenance`).
    &["storage"],
    // Records over the store.
    &["pull_log", "quota"],
    // Policies (which use quota's rules and the pull log).
    &["policy"],
    // Credentials and access, the upstream client, telemetry.
    &["auth", "proxy", "otel", "metrics"],
    // Events.
    &["notify"],
    // The domain layer every entrance calls.
    &["service"],
    // The entrances: the HTTP API and the web UI, side by side.
    &["api", "ui"],
    // Wiring: sockets, connection limits, reloads, background work, start.
    &["conn_limits", "listeners", "reload", "ops"],
    &["server"],
];

/// Uses against the order that are known and owed, each with its way out.
/// The list may only shrink: an entry that no longer occurs fails the test
/// too, so it is removed when it is paid.
const OWED: &[(&str, &str, &str)] = &[];

const APP_FROM: &str = "service";

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The top-level modules a source file names as `crate::<module>` in code
/// (comments left out), with the line of each.
fn uses(source: &str) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    for (n, line) in source.lines().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                group[..end].split(',').map(str::trim).collect()
            } else {
                vec![rest]
            };
            for name in names {
                let ident: String = name
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !ident.is_empty() {
                    found.push((ident, n + 1));
                }
            }
        }
    }
    found
}

fn walk(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    let mut unplaced = BTreeSet::new();
    let mut violations = Vec::new();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut owed_seen = BTreeSet::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_owned();
        // lib.rs declares the modules and `App`; main.rs is the binary.
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(own) = layer_of(&module) else {
            unplaced.insert(module);
            continue;
        };
        let source = std::fs::read_to_string(file).unwrap();
        for (used, line) in uses(&source) {
            if used == module || used == "self" {
                continue;
            }
            let allowed = match used.as_str() {
                "App" | "AppState" => own >= layer_of(APP_FROM).unwrap(),
                other => layer_of(other).is_some_and(|l| l < own),
            };
            edges
                .entry(module.clone())
                .or_default()
                .insert(used.clone());
            if !allowed && OWED.iter().any(|(m, u, _)| *m == module && *u == used) {
                owed_seen.insert((module.clone(), used.clone()));
            } else if !allowed {
                violations.push(format!(
                    "{}:{line}: {module} uses crate::{used}",
                    rel.display()
                ));
            }
        }
    }
    assert!(
        unplaced.is_empty(),
        "modules without a layer (place them in LAYERS and in docs/architecture.md): {unplaced:?}"
    );
    assert!(
        violations.is_empty(),
        "imports against the layer order (docs/architecture.md, \"Layers\"):\n{}",
        violations.join("\n")
    );
    for (module, used, why) in OWED {
        assert!(
            owed_seen.contains(&(module.to_string(), used.to_string())),
            "{module} no longer uses crate::{used} ({why}): remove it from OWED"
        );
    }
    // The rule itself must see something: the API uses the domain layer.
    assert!(edges["api"].contains("service"), "{edges:?}");
}

/// The scanner reads grouped and plain paths, and skips comments.
#[test]
fn the_scanner_sees_what_a_file_names() {
    let found = uses(
        "use crate::{App, storage::Storage};\nlet x = crate::oci::Digest::x(); // crate::api\n",
    );
    let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["App", "storage", "oci"]);
}

/// docs/architecture.md is the codemap: every file of `registry/src` is
/// named there (as `` `path/file.rs` ``, relative to `registry/src`), so a
/// file added without its line fails here.
#[test]
fn the_codemap_names_every_source_file() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let codemap = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/architecture.md"),
    )
    .unwrap();
    let mut files = Vec::new();
    walk(&src, &mut files);
    let mut missing: Vec<String> = files
        .iter()
        .map(|f| f.strip_prefix(&src).unwrap().display().to_string())
        .filter(|rel| !codemap.contains(&format!("`{rel}`")))
        .collect();
    missing.sort();
    assert!(
        missing.is_empty(),
        "files docs/architecture.md does not name: {missing:?}"
    );
}
