//! Runs the built `htpasswd` binary the way scripts and operators do.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use htpasswd::Htpasswd;

fn htpasswd(args: &[&str]) -> Output {
    htpasswd_with_stdin(args, None)
}

fn htpasswd_with_stdin(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_htpasswd"))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn htpasswd");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().expect("wait for htpasswd")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[track_caller]
fn assert_status(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        stderr(output)
    );
}

fn load(path: &Path) -> Htpasswd {
    Htpasswd::load(path).expect("file written by htpasswd must load")
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn nb_prints_one_verifiable_argon2id_line() {
    let out = htpasswd(&["-nb", "alice", "s3cret"]);
    assert_status(&out, 0);
    let stdout = stdout(&out);
    assert_eq!(stdout.lines().count(), 1, "{stdout:?}");
    assert!(stdout.ends_with('\n'));
    assert!(
        stdout.starts_with("alice:$argon2id$v=19$m=19456,t=2,p=1$"),
        "{stdout}"
    );
    let users = Htpasswd::parse(&stdout).unwrap();
    assert!(users.verify("alice", "s3cret"));
    assert!(!users.verify("alice", "s3cre"));
    assert!(!stderr(&out).contains("s3cret"));
}

#[test]
fn nbb_prints_2y_bcrypt_that_verifies() {
    let out = htpasswd(&["-nbB", "-C", "4", "alice", "s3cret"]);
    assert_status(&out, 0);
    let stdout = stdout(&out);
    assert!(stdout.starts_with("alice:$2y$04$"), "{stdout}");
    assert!(Htpasswd::parse(&stdout).unwrap().verify("alice", "s3cret"));
}

#[test]
fn bcrypt_defaults_to_cost_10() {
    let out = htpasswd(&["-nbB", "alice", "s3cret"]);
    assert_status(&out, 0);
    assert!(stdout(&out).starts_with("alice:$2y$10$"));
}

#[test]
fn cb_creates_a_0600_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    let out = htpasswd(&["-cb", path_str(&file), "alice", "s3cret"]);
    assert_status(&out, 0);
    assert!(stderr(&out).contains("Adding password for user alice"));
    let users = load(&file);
    assert_eq!(users.users().collect::<Vec<_>>(), ["alice"]);
    assert!(users.verify("alice", "s3cret"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

#[test]
fn c_truncates_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    std::fs::write(&file, "# old\nbob:plain\n").unwrap();
    assert_status(&htpasswd(&["-bc", path_str(&file), "alice", "pw"]), 0);
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.starts_with("alice:$argon2id$"));
}

#[test]
fn b_adds_and_updates_keeping_other_lines() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    let f = path_str(&file);
    assert_status(&htpasswd(&["-cbB", "-C", "4", f, "alice", "alice-pw"]), 0);
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.insert_str(0, "# registry users\n");
    std::fs::write(&file, &text).unwrap();

    let out = htpasswd(&["-b", f, "bob", "bob-pw"]);
    assert_status(&out, 0);
    assert!(stderr(&out).contains("Adding password for user bob"));
    let after_add = std::fs::read_to_string(&file).unwrap();
    assert!(after_add.starts_with(&text), "{after_add}");
    let users = load(&file);
    assert!(users.verify("alice", "alice-pw"));
    assert!(users.verify("bob", "bob-pw"));

    let out = htpasswd(&["-b", f, "alice", "new-pw"]);
    assert_status(&out, 0);
    assert!(stderr(&out).contains("Updating password for user alice"));
    let lines: Vec<_> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| l.split(':').next().unwrap().to_owned())
        .collect();
    assert_eq!(lines, ["# registry users", "alice", "bob"]);
    let users = load(&file);
    assert!(users.verify("alice", "new-pw"));
    assert!(!users.verify("alice", "alice-pw"));
    assert!(users.verify("bob", "bob-pw"));
}

#[test]
fn d_deletes_only_that_user() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    let f = path_str(&file);
    assert_status(&htpasswd(&["-cbB", "-C", "4", f, "alice", "a"]), 0);
    assert_status(&htpasswd(&["-bB", "-C", "4", f, "bob", "b"]), 0);

    let out = htpasswd(&["-D", f, "alice"]);
    assert_status(&out, 0);
    assert!(stderr(&out).contains("Deleting password for user alice"));
    let users = load(&file);
    assert_eq!(users.users().collect::<Vec<_>>(), ["bob"]);
    assert!(users.verify("bob", "b"));

    let out = htpasswd(&["-D", f, "alice"]);
    assert_status(&out, 0);
    assert!(stderr(&out).contains("User alice not found"));
}

#[test]
fn v_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    let f = path_str(&file);
    assert_status(&htpasswd(&["-cbB", "-C", "4", f, "alice", "right"]), 0);

    let out = htpasswd(&["-vb", f, "alice", "right"]);
    assert_status(&out, 0);
    assert!(stderr(&out).contains("Password for user alice correct."));

    let out = htpasswd(&["-vb", f, "alice", "wrong"]);
    assert_status(&out, 3);
    assert!(stderr(&out).contains("htpasswd: password verification failed"));

    let out = htpasswd(&["-vb", f, "nobody", "right"]);
    assert_status(&out, 6);
    assert!(stderr(&out).contains("User nobody not found"));

    let out = htpasswd_with_stdin(&["-vi", f, "alice"], Some("right\n"));
    assert_status(&out, 0);
}

#[test]
fn v_explains_unsupported_schemes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    std::fs::write(&file, "old:$apr1$lZL6V/ci$eIMz/iKDkbtys/uU7LEK00\n").unwrap();
    let out = htpasswd(&["-vb", path_str(&file), "old", "whatever"]);
    assert_status(&out, 3);
    assert!(stderr(&out).contains("apr1 MD5"), "{}", stderr(&out));
}

#[test]
fn i_reads_one_line_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    let out = htpasswd_with_stdin(
        &["-ci", path_str(&file), "alice"],
        Some("from stdin\r\nignored\n"),
    );
    assert_status(&out, 0);
    let users = load(&file);
    assert!(users.verify("alice", "from stdin"));
    assert!(!users.verify("alice", "from stdin\r"));

    let out = htpasswd_with_stdin(&["-niB", "-C", "4", "bob"], Some("piped"));
    assert_status(&out, 0);
    let stdout = stdout(&out);
    assert!(Htpasswd::parse(&stdout).unwrap().verify("bob", "piped"));

    let out = htpasswd_with_stdin(&["-ni", "bob"], Some(""));
    assert_status(&out, 1);
}

#[test]
fn without_c_a_missing_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("missing");
    let out = htpasswd(&["-b", path_str(&file), "alice", "pw"]);
    assert_status(&out, 1);
    assert!(
        stderr(&out).contains("use '-c' to create it"),
        "{}",
        stderr(&out)
    );
    assert!(!file.exists());
}

#[test]
fn no_password_source_and_no_terminal_fails() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_htpasswd"));
    cmd.args(["-c", path_str(&file), "alice"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Detach from any controlling terminal so the prompt cannot succeed.
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: setsid is async-signal-safe and touches no Rust state.
        unsafe {
            cmd.pre_exec(|| {
                extern "C" {
                    fn setsid() -> i32;
                }
                setsid();
                Ok(())
            });
        }
    }
    let out = cmd.output().unwrap();
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).starts_with("htpasswd: "), "{}", stderr(&out));
    assert!(!file.exists());
}

#[test]
fn rejects_bad_user_names_and_usage() {
    assert_status(&htpasswd(&["-nb", "a:b", "pw"]), 6);
    assert_status(&htpasswd(&["-nb", "alice"]), 2);
    assert_status(&htpasswd(&["-nb", "alice", "pw", "extra"]), 2);
    assert_status(&htpasswd(&["-nc", "alice"]), 2);
    assert_status(&htpasswd(&["-nbC", "12", "alice", "pw"]), 2);
    assert_status(&htpasswd(&["-nbB", "-C", "3", "alice", "pw"]), 2);
    let out = htpasswd(&["-nbm", "alice", "pw"]);
    assert_status(&out, 2);
    assert!(stderr(&out).contains("not supported"));
    let long = "x".repeat(73);
    assert_status(&htpasswd(&["-nbB", "-C", "4", "alice", &long]), 5);
}

#[test]
fn invalid_file_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    std::fs::write(&file, "alice:x\nthis line has no colon\n").unwrap();
    let out = htpasswd(&["-b", path_str(&file), "bob", "pw"]);
    assert_status(&out, 7);
    assert!(stderr(&out).contains("line 2"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "alice:x\nthis line has no colon\n"
    );
}

#[test]
fn help_says_argon2id_is_the_default() {
    let out = htpasswd(&["--help"]);
    assert_status(&out, 0);
    let help = stdout(&out);
    assert!(help.contains("argon2id"), "{help}");
}
