//! Runs Debian's `skopeo` as a subprocess, isolated from the user's
//! credentials: its own empty auth file, no policy lookup, its own temp dir.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

pub const SKOPEO: &str = "/usr/bin/skopeo";

pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Output {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

pub struct Skopeo {
    dir: tempfile::TempDir,
    authfile: PathBuf,
}

impl Default for Skopeo {
    fn default() -> Self {
        Skopeo::new()
    }
}

impl Skopeo {
    pub fn new() -> Skopeo {
        assert!(
            std::path::Path::new(SKOPEO).exists(),
            "{SKOPEO} is missing: run scripts/ci-deps.sh (apt package skopeo)"
        );
        let dir = tempfile::tempdir().unwrap();
        let authfile = dir.path().join("auth.json");
        std::fs::write(&authfile, br#"{"auths":{}}"#).unwrap();
        std::fs::create_dir(dir.path().join("tmp")).unwrap();
        std::fs::create_dir(dir.path().join("docker-config")).unwrap();
        Skopeo { dir, authfile }
    }

    /// Runs `skopeo [global flags] <subcommand> --authfile <empty auth file>
    /// <rest...>` (every subcommand the tests use takes `--authfile`).
    pub async fn run(&self, args: &[&str]) -> Output {
        let mut cmd = tokio::process::Command::new(SKOPEO);
        cmd.arg("--insecure-policy")
            .arg("--command-timeout")
            .arg("120s")
            .arg("--tmpdir")
            .arg(self.dir.path().join("tmp"));
        let sub = args
            .iter()
            .position(|a| ["copy", "inspect", "list-tags", "delete", "sync"].contains(a))
            .expect("a skopeo subcommand");
        cmd.args(&args[..=sub])
            .arg("--authfile")
            .arg(&self.authfile)
            .args(&args[sub + 1..]);
        cmd.env("REGISTRY_AUTH_FILE", &self.authfile)
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .env("XDG_RUNTIME_DIR", self.dir.path())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(180), cmd.output())
            .await
            .unwrap_or_else(|_| panic!("skopeo {args:?} did not finish in 180 s"))
            .expect("skopeo runs");
        Output {
            status: out.status,
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs and asserts success.
    pub async fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args).await;
        assert!(
            out.status.success(),
            "skopeo {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            out.stdout_str(),
            out.stderr
        );
        out
    }

    /// Runs and asserts failure.
    pub async fn fails(&self, args: &[&str]) -> Output {
        let out = self.run(args).await;
        assert!(
            !out.status.success(),
            "skopeo {args:?} should have failed:\nstdout: {}\nstderr: {}",
            out.stdout_str(),
            out.stderr
        );
        eprintln!(
            "skopeo {args:?} failed as expected: {}",
            out.stderr.trim_end()
        );
        out
    }
}

/// The test user's `user:password`, for skopeo's `--creds` flags.
pub fn creds() -> String {
    format!("{}:{}", super::USER, super::PASSWORD)
}

/// The args of `copy <flags> --<side>-creds <the test user>
/// --<side>-tls-verify=false <from> <to>`, `side` being `dest` for a push
/// into a plain-HTTP registry and `src` for a pull out of one.
fn copy_args(side: &str, flags: &[&str], from: &str, to: &str) -> Vec<String> {
    let mut args = vec!["copy".to_owned()];
    args.extend(flags.iter().map(|f| f.to_string()));
    args.extend([
        format!("--{side}-creds"),
        creds(),
        format!("--{side}-tls-verify=false"),
        from.to_owned(),
        to.to_owned(),
    ]);
    args
}

/// `copy <flags> --dest-creds <the test user> --dest-tls-verify=false
/// <from> <to>`: the args of a push into a plain-HTTP registry.
pub fn push_args(flags: &[&str], from: &str, to: &str) -> Vec<String> {
    copy_args("dest", flags, from, to)
}

impl Skopeo {
    /// Runs `args` (owned strings) and asserts success.
    pub async fn ok_owned(&self, args: &[String]) -> Output {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.ok(&args).await
    }

    /// Runs `args` (owned strings) and asserts failure.
    pub async fn fails_owned(&self, args: &[String]) -> Output {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.fails(&args).await
    }

    /// Pushes `from` to `to` as the test user over plain HTTP (see
    /// `push_args`); asserts success.
    pub async fn push(&self, flags: &[&str], from: &str, to: &str) -> Output {
        self.ok_owned(&push_args(flags, from, to)).await
    }

    /// Pulls `from` (over plain HTTP, as the test user) to `to`; asserts
    /// success.
    pub async fn pull(&self, flags: &[&str], from: &str, to: &str) -> Output {
        self.ok_owned(&copy_args("src", flags, from, to)).await
    }

    /// `<sub> <flags> --creds <the test user> --tls-verify=false <remote>`
    /// (inspect, list-tags, delete); asserts success.
    pub async fn with_creds(&self, sub: &str, flags: &[&str], remote: &str) -> Output {
        let mut args = vec![sub.to_owned()];
        args.extend(flags.iter().map(|f| f.to_string()));
        args.extend([
            "--creds".to_owned(),
            creds(),
            "--tls-verify=false".to_owned(),
            remote.to_owned(),
        ]);
        self.ok_owned(&args).await
    }
}
