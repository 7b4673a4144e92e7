//! The counter-app image, built the tested way: the host's static binary
//! (STATIC_BIN_DIR) in a build context of its own, with counter-app/Dockerfile.

use std::path::{Path, PathBuf};

use super::docker::{static_binary, Resources};

/// counter-app/Dockerfile, found from whichever workspace crate runs the test.
pub fn dockerfile() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join("counter-app/Dockerfile"))
        .find(|path| path.is_file())
        .expect("counter-app/Dockerfile not found above CARGO_MANIFEST_DIR")
}

/// Builds the image as `tag` (tracked in `resources` for removal); `extra`
/// goes to `docker build`, e.g. `["--build-arg", "VERSION=1.2.3"]`.
pub fn build(resources: &mut Resources, tag: &str, extra: &[&str]) {
    let binary = static_binary("counter-app");
    let context = tempfile::tempdir().expect("temp build context");
    std::fs::copy(&binary, context.path().join("counter-app"))
        .unwrap_or_else(|e| panic!("cannot copy {}: {e}", binary.display()));
    resources.build_image(tag, &dockerfile(), context.path(), extra);
}
