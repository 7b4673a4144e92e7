//! A Redis image built offline: Debian's `/usr/bin/redis-server`, the shared
//! libraries `ldd` lists and the dynamic loader, copied into a FROM scratch
//! image. No base image is pulled, so it builds on machines without a registry.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::docker::Resources;

pub const REDIS_SERVER: &str = "/usr/bin/redis-server";

const DOCKERFILE: &str = r#"FROM scratch
COPY rootfs/ /
# The loader finds the copied libraries here even without /etc/ld.so.cache.
ENV LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu:/lib:/usr/lib
USER 65532:65532
EXPOSE 6379
ENTRYPOINT ["/usr/bin/redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no"]
"#;

/// Builds the image as `tag` (tracked in `resources` for removal).
pub fn build(resources: &mut Resources, tag: &str) {
    let context = tempfile::tempdir().expect("temp build context");
    write_context(context.path());
    let dockerfile = context.path().join("Dockerfile");
    resources.build_image(tag, &dockerfile, context.path(), &[]);
}

/// Lays out `rootfs/` (binary + libraries at their host paths) and the Dockerfile.
pub fn write_context(dir: &Path) {
    let rootfs = dir.join("rootfs");
    for file in files_to_copy() {
        let target = rootfs.join(file.strip_prefix("/").expect("absolute path"));
        std::fs::create_dir_all(target.parent().expect("has a parent")).expect("mkdir in context");
        // Copy the resolved file under the name the loader asks for (the
        // host's paths are often symlinks, which would dangle in the image).
        let real = std::fs::canonicalize(&file)
            .unwrap_or_else(|e| panic!("cannot resolve {}: {e}", file.display()));
        std::fs::copy(&real, &target).unwrap_or_else(|e| {
            panic!(
                "cannot copy {} to {}: {e}",
                real.display(),
                target.display()
            )
        });
    }
    std::fs::write(dir.join("Dockerfile"), DOCKERFILE).expect("write Dockerfile");
}

/// redis-server plus every absolute path in its `ldd` output.
fn files_to_copy() -> Vec<PathBuf> {
    assert!(
        Path::new(REDIS_SERVER).exists(),
        "{REDIS_SERVER} is missing: install Debian's redis-server (scripts/ci-deps.sh does)"
    );
    let output = Command::new("ldd")
        .arg(REDIS_SERVER)
        .output()
        .expect("cannot run ldd");
    assert!(output.status.success(), "ldd {REDIS_SERVER} failed");
    let mut files = vec![PathBuf::from(REDIS_SERVER)];
    files.extend(parse_ldd(&String::from_utf8_lossy(&output.stdout)));
    files
}

/// Absolute paths from ldd lines such as
/// `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` and
/// `/lib64/ld-linux-x86-64.so.2 (0x...)`; the vDSO has no file and is skipped.
pub fn parse_ldd(output: &str) -> Vec<PathBuf> {
    output
        .lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}
