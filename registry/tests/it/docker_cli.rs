//! The docker CLI and this machine's Docker engine against the registry:
//! login (wrong and right password), push of an image built FROM scratch
//! around Debian's static busybox, pull back, run, logout, refused pull.
//!
//! Every docker call uses a temporary DOCKER_CONFIG so the user's
//! `~/.docker/config.json` is never touched; every image and container the
//! test creates is removed by a Drop guard, also when it fails.

use crate::support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use support::{TestServer, PASSWORD, USER};

const BUSYBOX: &str = "/bin/busybox";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// The docker CLI with its own config directory.
struct Docker {
    config: tempfile::TempDir,
}

impl Docker {
    fn new() -> Docker {
        Docker {
            config: tempfile::tempdir().unwrap(),
        }
    }

    fn config_dir(&self) -> &Path {
        self.config.path()
    }

    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new("docker");
        cmd.args(args)
            .env("DOCKER_CONFIG", self.config.path())
            // The engine is 20.10 and there is no buildx: the classic
            // builder, explicitly, so the CLI does not go looking for it.
            .env("DOCKER_BUILDKIT", "0")
            .stdin(Stdio::null());
        cmd
    }

    async fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use tokio::io::AsyncWriteExt;
        let mut cmd = tokio::process::Command::from(self.command(args));
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().expect("docker CLI runs");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(input.as_bytes()).await.unwrap();
            drop(pipe);
        }
        let out = tokio::time::timeout(Duration::from_secs(300), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("docker {args:?} did not finish in 300 s"))
            .unwrap();
        let out = Output {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        eprintln!(
            "docker {args:?} -> {}\n  stdout: {}\n  stderr: {}",
            if out.ok { "ok" } else { "FAILED" },
            out.stdout.trim_end(),
            out.stderr.trim_end()
        );
        out
    }

    async fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, None).await
    }

    async fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args).await;
        assert!(
            out.ok,
            "docker {args:?} failed:\n{}\n{}",
            out.stdout, out.stderr
        );
        out
    }

    /// What `config.json` says about `host` (null when nothing).
    fn stored_auth(&self, host: &str) -> serde_json::Value {
        let Ok(bytes) = std::fs::read(self.config_dir().join("config.json")) else {
            return serde_json::Value::Null;
        };
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        v["auths"][host].clone()
    }
}

/// Removes every container and image reference the test registered, on
/// success and on panic alike.
struct Cleanup<'a> {
    docker: &'a Docker,
    containers: Vec<String>,
    images: Vec<String>,
    /// Image ids this test built, removed without `-f` after the tags, so
    /// no other test's image is ever untagged (each test builds its own id:
    /// `context_dir` labels it).
    ids: Vec<String>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = self.docker.command(&["rm", "-f", c]).output();
        }
        for i in self.images.iter().rev() {
            let _ = self.docker.command(&["rmi", "-f", i]).output();
        }
        for i in &self.ids {
            let _ = self.docker.command(&["rmi", i]).output();
        }
    }
}

fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("t{}-{}", std::process::id(), nanos % 1_000_000_000_000)
}

fn context_dir() -> tempfile::TempDir {
    assert!(
        Path::new(BUSYBOX).exists(),
        "{BUSYBOX} is missing: run scripts/ci-deps.sh (apt package busybox-static)"
    );
    let ctx = tempfile::tempdir().unwrap();
    std::fs::copy(BUSYBOX, ctx.path().join("busybox")).unwrap();
    // A label of its own makes each test's image (ID) its own: the tests
    // run at once, and one removing an image ID another also built fails
    // while the other still tags it ("left behind").
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM scratch\nLABEL test={}\nCOPY busybox /busybox\nCMD [\"/busybox\",\"echo\",\"hello-from-registry\"]\n",
            unique()
        ),
    )
    .unwrap();
    ctx
}

fn mentions_refusal(stderr: &str) -> bool {
    let e = stderr.to_ascii_lowercase();
    e.contains("unauthorized") || e.contains("no basic auth credentials")
}

/// `docker push` prints `<tag>: digest: sha256:... size: N` last.
fn pushed_digest(stdout: &str) -> String {
    let line = stdout
        .lines()
        .find(|l| l.contains(": digest: "))
        .unwrap_or_else(|| panic!("no digest line in push output:\n{stdout}"));
    let d = line.split(": digest: ").nth(1).unwrap();
    d.split_whitespace().next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs docker (run scripts/test.sh)"]
async fn login_push_pull_run_logout() {
    let s = TestServer::start().await;
    let host = format!("127.0.0.1:{}", s.addr.port());
    let docker = Docker::new();
    let tag = unique();
    let image = format!("{host}/e2e/busybox:{tag}");
    let mirror = format!("{host}/e2e/mirror:{tag}");
    let container = format!("registry-e2e-{tag}");
    let mut cleanup = Cleanup {
        docker: &docker,
        containers: vec![container.clone()],
        images: vec![image.clone(), mirror.clone()],
        ids: Vec::new(),
    };

    // Login: a wrong password is refused and nothing is stored.
    let out = docker
        .run_with_stdin(
            &["login", &host, "-u", USER, "--password-stdin"],
            Some("not-the-password\n"),
        )
        .await;
    assert!(
        !out.ok,
        "login with a wrong password succeeded:\n{}",
        out.stdout
    );
    assert!(
        mentions_refusal(&out.stderr),
        "wrong-password login: {}",
        out.stderr
    );
    assert!(docker.stored_auth(&host).is_null());
    // The right one is accepted and stored (in our temporary config only).
    let out = docker
        .run_with_stdin(
            &["login", &host, "-u", USER, "--password-stdin"],
            Some(&format!("{PASSWORD}\n")),
        )
        .await;
    assert!(out.ok, "login failed:\n{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("Login Succeeded"), "{}", out.stdout);
    assert!(
        !docker.stored_auth(&host).is_null(),
        "no credentials stored for {host}"
    );

    // Build FROM scratch around the static busybox.
    let ctx = context_dir();
    let built = docker
        .ok(&[
            "build",
            "-q",
            "--force-rm",
            "-t",
            &image,
            &ctx.path().display().to_string(),
        ])
        .await;
    let image_id = built.stdout.trim().to_owned();
    assert!(
        image_id.starts_with("sha256:"),
        "build -q printed {image_id:?}"
    );
    cleanup.images.insert(0, image_id.clone());

    // Push, and check what the registry holds.
    let out = docker.ok(&["push", &image]).await;
    let digest = pushed_digest(&out.stdout);
    let r = s
        .client()
        .get(&format!("/v2/e2e/busybox/manifests/{tag}"))
        .header("accept", DOCKER_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["docker-content-digest"].to_str().unwrap(),
        digest
    );
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        DOCKER_MANIFEST
    );
    let manifest: serde_json::Value = r.json().await.unwrap();
    // The image ID of a classic build is its config's digest.
    assert_eq!(manifest["config"]["digest"], image_id.as_str());
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();
    let r = s
        .client()
        .head(&format!("/v2/e2e/busybox/blobs/{layer}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A second repository: docker mounts the layer across repositories.
    docker.ok(&["tag", &image, &mirror]).await;
    let out = docker.ok(&["push", &mirror]).await;
    assert!(
        out.stdout.contains("Mounted from e2e/busybox"),
        "expected a cross-repository mount:\n{}",
        out.stdout
    );
    assert_eq!(pushed_digest(&out.stdout), digest);
    docker.ok(&["rmi", &mirror]).await;

    // Remove it locally, pull it back, run it.
    docker.ok(&["rmi", &image]).await;
    let out = docker.run(&["image", "inspect", &image]).await;
    assert!(!out.ok, "image still present after rmi");
    let out = docker.ok(&["pull", &image]).await;
    assert!(
        out.stdout.contains(&digest),
        "pull output lacks {digest}:\n{}",
        out.stdout
    );
    let id = docker
        .ok(&["image", "inspect", "--format", "{{.Id}}", &image])
        .await;
    assert_eq!(
        id.stdout.trim(),
        image_id,
        "pulled image differs from the built one"
    );
    let out = docker
        .ok(&["run", "--rm", "--name", &container, &image])
        .await;
    assert_eq!(out.stdout, "hello-from-registry\n");

    // Logout: credentials gone, and a pull is refused.
    let out = docker.ok(&["logout", &host]).await;
    assert!(
        out.stdout.contains("Removing login credentials"),
        "{}",
        out.stdout
    );
    assert!(docker.stored_auth(&host).is_null());
    docker.ok(&["rmi", &image]).await;
    let out = docker.run(&["pull", &image]).await;
    assert!(!out.ok, "anonymous pull succeeded:\n{}", out.stdout);
    assert!(
        mentions_refusal(&out.stderr),
        "anonymous pull: {}",
        out.stderr
    );
    let out = docker.run(&["image", "inspect", &image]).await;
    assert!(!out.ok, "a refused pull left an image behind");

    drop(cleanup);
    assert_no_leftovers(&docker, &[&image, &mirror, &image_id], &container);
}

/// Proves the guard did its work: none of the test's images or containers
/// remain in the engine.
fn assert_no_leftovers(docker: &Docker, images: &[&str], container: &str) {
    for i in images {
        let out = docker.command(&["image", "inspect", i]).output().unwrap();
        assert!(!out.status.success(), "image {i} left behind");
    }
    let out = docker
        .command(&["ps", "-a", "-q", "--filter", &format!("name={container}")])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "container left behind"
    );
}

/// Token mode with the built-in endpoint and an ACL: docker logs in (GET
/// with Basic, `offline_token=true`: it keeps the refresh token as its
/// identity token and uses the OAuth2 POST from then on), pushes where the
/// ACL allows, pulls back, and sees a clear "denied" where it does not.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs docker (run scripts/test.sh)"]
async fn token_mode_login_push_pull_and_denied_push() {
    let s = TestServer::start_with(|c| {
        let dir = c.auth.htpasswd.path.parent().unwrap().to_owned();
        std::fs::write(
            &c.auth.htpasswd.path,
            format!(
                "{USER}:{}\nbob:{}\n",
                htpasswd::hash_bcrypt(PASSWORD, 4).unwrap(),
                htpasswd::hash_bcrypt("bobpw", 4).unwrap()
            ),
        )
        .unwrap();
        c.auth.mode = registry::config::AuthMode::Token;
        c.auth.token.signing_key = dir.join("token-key.pem");
        c.acl = Some(
            toml::from_str(&format!(
                "[[rules]]\nrepository = \"team-a/**\"\npull = [\"{USER}\"]\npush = [\"{USER}\"]\n\
                 [[rules]]\nrepository = \"team-b/**\"\npull = [\"bob\"]\npush = [\"bob\"]\n"
            ))
            .unwrap(),
        );
    })
    .await;
    let host = format!("127.0.0.1:{}", s.addr.port());
    let docker = Docker::new();
    let tag = unique();
    let image = format!("{host}/team-a/busybox:{tag}");
    let denied = format!("{host}/team-b/busybox:{tag}");
    let mut cleanup = Cleanup {
        docker: &docker,
        containers: Vec::new(),
        images: vec![image.clone(), denied.clone()],
        ids: Vec::new(),
    };

    let out = docker
        .run_with_stdin(
            &["login", &host, "-u", USER, "--password-stdin"],
            Some("not-the-password\n"),
        )
        .await;
    assert!(!out.ok, "login with a wrong password succeeded");
    assert!(mentions_refusal(&out.stderr), "{}", out.stderr);
    let out = docker
        .run_with_stdin(
            &["login", &host, "-u", USER, "--password-stdin"],
            Some(&format!("{PASSWORD}\n")),
        )
        .await;
    assert!(out.ok, "login failed:\n{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("Login Succeeded"), "{}", out.stdout);
    // docker keeps the refresh token (and no password) as its identity
    // token, and from now on gets access tokens with the OAuth2 POST.
    let stored = docker.stored_auth(&host);
    assert!(
        stored["identitytoken"]
            .as_str()
            .is_some_and(|t| t.split('.').count() == 3),
        "no identity token stored for {host}: {stored}"
    );

    let ctx = context_dir();
    let built = docker
        .ok(&[
            "build",
            "-q",
            "--force-rm",
            "-t",
            &image,
            &ctx.path().display().to_string(),
        ])
        .await;
    let image_id = built.stdout.trim().to_owned();
    cleanup.images.insert(0, image_id.clone());

    let out = docker.ok(&["push", &image]).await;
    let digest = pushed_digest(&out.stdout);

    // Pull it back after removing it locally.
    docker.ok(&["rmi", &image]).await;
    let out = docker.ok(&["pull", &image]).await;
    assert!(out.stdout.contains(&digest), "{}", out.stdout);
    let id = docker
        .ok(&["image", "inspect", "--format", "{{.Id}}", &image])
        .await;
    assert_eq!(id.stdout.trim(), image_id);

    // team-b belongs to bob: the push is refused and docker says so.
    docker.ok(&["tag", &image, &denied]).await;
    let out = docker.run(&["push", &denied]).await;
    assert!(!out.ok, "a push the ACL denies succeeded:\n{}", out.stdout);
    assert!(
        out.stderr
            .contains("denied: requested access to the resource is denied"),
        "docker's message for a denied push: {}",
        out.stderr
    );
    let http = reqwest::Client::new();
    let t: serde_json::Value = http
        .get(format!(
            "{}/auth/token?service=registry&scope=repository:team-b/busybox:pull",
            s.base
        ))
        .basic_auth("bob", Some("bobpw"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = http
        .get(format!("{}/v2/team-b/busybox/tags/list", s.base))
        .bearer_auth(t["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "nothing was pushed to team-b");

    drop(cleanup);
    assert_no_leftovers(&docker, &[&image, &denied, &image_id], "no-container");
}

/// Immutable tags as docker sees them (`[[policies.immutable]]`, docs/policies.md):
/// pushing the same image to `v1.0.0` again passes; pushing a changed image
/// to it fails with docker printing the rule; deleting it is refused too.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs docker (run scripts/test.sh)"]
async fn immutable_tag_refuses_a_changed_docker_push() {
    let s = TestServer::start_with(|c| {
        c.policies =
            toml::from_str("[[immutable]]\nrepository = \"e2e/**\"\ntags = [\"v*\"]").unwrap();
    })
    .await;
    let host = format!("127.0.0.1:{}", s.addr.port());
    let docker = Docker::new();
    let tag = unique();
    let release = format!("{host}/e2e/release-{tag}:v1.0.0");
    let mut cleanup = Cleanup {
        docker: &docker,
        containers: Vec::new(),
        images: vec![release.clone()],
        ids: Vec::new(),
    };
    docker
        .run_with_stdin(
            &["login", &host, "-u", USER, "--password-stdin"],
            Some(&format!("{PASSWORD}\n")),
        )
        .await;
    let build = |ctx: &tempfile::TempDir| {
        let args = [
            "build".to_owned(),
            "-q".into(),
            "--force-rm".into(),
            "-t".into(),
            release.clone(),
            ctx.path().display().to_string(),
        ];
        let docker = &docker;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            docker.ok(&args).await.stdout.trim().to_owned()
        }
    };
    let first = context_dir();
    let first_id = build(&first).await;
    cleanup.ids.push(first_id.clone());
    let digest = pushed_digest(&docker.ok(&["push", &release]).await.stdout);
    // A CI re-run: the same image again.
    let again = pushed_digest(&docker.ok(&["push", &release]).await.stdout);
    assert_eq!(again, digest);

    // A changed image (another CMD, so another config and manifest).
    let second = context_dir();
    std::fs::write(
        second.path().join("Dockerfile"),
        "FROM scratch\nCOPY busybox /busybox\nCMD [\"/busybox\",\"echo\",\"changed\"]\n",
    )
    .unwrap();
    let second_id = build(&second).await;
    cleanup.ids.push(second_id.clone());
    assert_ne!(second_id, first_id);
    let out = docker.run(&["push", &release]).await;
    assert!(!out.ok, "a changed push to an immutable tag succeeded");
    assert!(
        out.stderr.contains("denied: tag v1.0.0 of e2e/release-")
            && out
                .stderr
                .contains("is immutable under policies.immutable[0]")
            && out.stderr.contains(&digest),
        "docker's message for an immutable tag: {}",
        out.stderr
    );
    let c = s.client();
    let path = format!("/v2/e2e/release-{tag}/manifests/v1.0.0");
    let r = c.delete(&path).send().await.unwrap();
    assert_eq!(r.status(), 409);
    let r = c
        .head(&path)
        .header("accept", DOCKER_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["docker-content-digest"], digest.as_str());

    drop(cleanup);
    assert_no_leftovers(&docker, &[&release, &first_id, &second_id], "no-container");
}

/// Quotas as docker sees them (`[[policies.quota]]`, docs/policies.md): a
/// push whose layer does not fit in the namespace fails, docker printing
/// the rule, the usage and the limit; nothing of it is stored.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs docker (run scripts/test.sh)"]
async fn a_docker_push_over_quota_is_denied_with_the_rule() {
    let s = TestServer::start_with(|c| {
        c.policies =
            toml::from_str("[[quota]]\nnamespace = \"small\"\nmax_bytes = 100000").unwrap();
    })
    .await;
    let host = format!("127.0.0.1:{}", s.addr.port());
    let docker = Docker::new();
    let image = format!("{host}/small/app-{}:v1", unique());
    let mut cleanup = Cleanup {
        docker: &docker,
        containers: Vec::new(),
        images: vec![image.clone()],
        ids: Vec::new(),
    };
    docker
        .run_with_stdin(
            &["login", &host, "-u", USER, "--password-stdin"],
            Some(&format!("{PASSWORD}\n")),
        )
        .await;
    // An image of its own (another CMD): the other tests build the default
    // one at the same time and check that its ID is gone afterwards.
    let ctx = context_dir();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY busybox /busybox\nCMD [\"/busybox\",\"echo\",\"over-quota\"]\n",
    )
    .unwrap();
    let id = docker
        .ok(&[
            "build",
            "-q",
            "--force-rm",
            "-t",
            &image,
            &ctx.path().display().to_string(),
        ])
        .await
        .stdout
        .trim()
        .to_owned();
    cleanup.ids.push(id.clone());
    let out = docker.run(&["push", &image]).await;
    assert!(!out.ok, "a push over quota succeeded");
    assert!(
        out.stderr.contains(
            "denied: quota exceeded: namespace small holds 0 bytes of 100000 allowed by policies.quota[0] (0 of them by unfinished uploads); this upload adds "
        ) && !out.stderr.contains("adds 1 bytes"),
        "docker's message for a push over quota: {}",
        out.stderr
    );
    let repo = image
        .split_once('/')
        .unwrap()
        .1
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    let r = s
        .client()
        .get(&format!("/v2/{repo}/_ext/tags"))
        .send()
        .await
        .unwrap();
    let used = if r.status() == 200 {
        let v: serde_json::Value = r.json().await.unwrap();
        v["quota"][0]["used_bytes"].as_u64().unwrap()
    } else {
        0
    };
    assert!(used <= 100_000, "{used} bytes stored past the limit");
    drop(cleanup);
    assert_no_leftovers(&docker, &[&image, &id], "no-container");
}
