//! The registry image (registry/Dockerfile), built the tested way: the host's
//! static `registry` binary (STATIC_BIN_DIR) plus the two empty directories
//! the Dockerfile copies as the writable data and auth directories.

use std::path::{Path, PathBuf};

use crate::docker::{static_binary, Resources};

/// registry/Dockerfile, found from whichever workspace crate runs the test.
pub fn dockerfile() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join("registry/Dockerfile"))
        .find(|path| path.is_file())
        .expect("registry/Dockerfile not found above CARGO_MANIFEST_DIR")
}

/// Lays out the build context: `registry`, `data/`, `auth/`.
pub fn write_context(dir: &Path) {
    let binary = static_binary("registry");
    std::fs::copy(&binary, dir.join("registry"))
        .unwrap_or_else(|e| panic!("cannot copy {}: {e}", binary.display()));
    for empty in ["data", "auth"] {
        std::fs::create_dir_all(dir.join(empty)).expect("mkdir in the build context");
    }
}

/// Builds the image as `tag` (tracked in `resources` for removal); `extra`
/// goes to `docker build`, e.g. `["--build-arg", "VERSION=1.2.3"]`.
pub fn build(resources: &mut Resources, tag: &str, extra: &[&str]) {
    let context = tempfile::tempdir().expect("temp build context");
    write_context(context.path());
    resources.build_image(tag, &dockerfile(), context.path(), extra);
}
