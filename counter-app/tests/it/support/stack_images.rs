//! Images the deploy tests need besides the counter and the registry, built
//! offline from the host's binaries (no base image can be pulled here):
//!
//! * a Redis image that works where the stack files expect the official
//!   `redis` image: `redis-server` and `redis-cli` on the PATH (the stack's
//!   command and healthcheck), a writable `/data` (the volume);
//! * a client image: Debian's static busybox (`sh`, `wget`, `timeout`,
//!   `nslookup`), to call services from inside an overlay network.

use std::path::Path;
use std::process::Command;

use super::docker::Resources;
use super::redis_image;

const REDIS_CLI: &str = "/usr/bin/redis-cli";
const BUSYBOX: &str = "/usr/bin/busybox";

const REDIS_DOCKERFILE: &str = r#"FROM scratch
COPY rootfs/ /
COPY --chown=65532:65532 data/ /data/
# The loader finds the copied libraries here even without /etc/ld.so.cache.
ENV LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu:/lib:/usr/lib
WORKDIR /data
USER 65532:65532
EXPOSE 6379
CMD ["redis-server", "--protected-mode", "no"]
"#;

/// The Redis image for stacks, as `tag` (tracked for removal).
pub fn build_redis(resources: &mut Resources, tag: &str) {
    let context = tempfile::tempdir().expect("temp build context");
    let dir = context.path();
    // redis-server and its libraries, as the counter's image tests use them.
    redis_image::write_context(dir);
    copy_with_libraries(REDIS_CLI, &dir.join("rootfs"));
    std::fs::create_dir_all(dir.join("data")).expect("mkdir data");
    std::fs::write(dir.join("Dockerfile"), REDIS_DOCKERFILE).expect("write Dockerfile");
    resources.build_image(tag, &dir.join("Dockerfile"), dir, &[]);
}

/// The busybox client image, as `tag` (tracked for removal).
pub fn build_client(resources: &mut Resources, tag: &str) {
    assert!(
        Path::new(BUSYBOX).exists(),
        "{BUSYBOX} is missing: install Debian's busybox-static (scripts/ci-deps.sh does)"
    );
    let context = tempfile::tempdir().expect("temp build context");
    let dir = context.path();
    std::fs::copy(BUSYBOX, dir.join("busybox")).expect("copy busybox");
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT [\"/bin/busybox\"]\n",
    )
    .expect("write Dockerfile");
    resources.build_image(tag, &dir.join("Dockerfile"), dir, &[]);
}

/// Copies `binary` and the libraries `ldd` lists into `rootfs` at their paths.
fn copy_with_libraries(binary: &str, rootfs: &Path) {
    assert!(
        Path::new(binary).exists(),
        "{binary} is missing: install Debian's redis-tools (redis-server depends on it)"
    );
    let output = Command::new("ldd")
        .arg(binary)
        .output()
        .expect("cannot run ldd");
    assert!(output.status.success(), "ldd {binary} failed");
    let mut files = vec![std::path::PathBuf::from(binary)];
    files.extend(redis_image::parse_ldd(&String::from_utf8_lossy(
        &output.stdout,
    )));
    for file in files {
        let target = rootfs.join(file.strip_prefix("/").expect("absolute path"));
        if target.exists() {
            continue;
        }
        std::fs::create_dir_all(target.parent().expect("has a parent")).expect("mkdir in rootfs");
        let real = std::fs::canonicalize(&file)
            .unwrap_or_else(|e| panic!("cannot resolve {}: {e}", file.display()));
        std::fs::copy(&real, &target)
            .unwrap_or_else(|e| panic!("cannot copy {}: {e}", real.display()));
    }
}
