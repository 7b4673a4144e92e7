//! A real Debian `redis-server` per test: its own port, no persistence, killed
//! on drop. Tests can stop and restart it to simulate an outage.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const REDIS_SERVER: &str = "/usr/bin/redis-server";
const START_TIMEOUT: Duration = Duration::from_secs(15);

pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    password: Option<String>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// With `requirepass`, to test authenticated connections.
    pub fn start_with_password(password: &str) -> Self {
        Self::start_with(Some(password.to_owned()))
    }

    /// On a given port, e.g. one an app was already told to use.
    pub fn start_on(port: u16) -> Self {
        let mut server = Self::unstarted(port, None);
        server.restart();
        server
    }

    fn start_with(password: Option<String>) -> Self {
        // A port picked as free can be taken before redis binds it; try a few.
        let mut last_error = String::new();
        for _ in 0..5 {
            let mut server = Self::unstarted(super::free_port(), password.clone());
            match server.spawn_and_wait() {
                Ok(()) => return server,
                Err(err) => last_error = err,
            }
        }
        panic!("redis-server did not start: {last_error}");
    }

    fn unstarted(port: u16, password: Option<String>) -> Self {
        assert!(
            std::path::Path::new(REDIS_SERVER).exists(),
            "{REDIS_SERVER} is missing: install Debian's redis-server (scripts/ci-deps.sh does)"
        );
        Self {
            child: None,
            port,
            password,
            dir: tempfile::tempdir().expect("temp dir for redis-server"),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (like a crash: clients see their connections reset).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty (no persistence).
    pub fn restart(&mut self) {
        self.stop();
        if let Err(err) = self.spawn_and_wait() {
            panic!("redis-server did not restart on port {}: {err}", self.port);
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let mut cmd = Command::new(REDIS_SERVER);
        cmd.args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.log_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(password) = &self.password {
            cmd.args(["--requirepass", password]);
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {REDIS_SERVER}: {e}"))?;
        self.child = Some(child);

        let deadline = std::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(reply) = self.command(&["PING"]) {
                if reply == "PONG" {
                    return Ok(());
                }
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || std::time::Instant::now() >= deadline {
                self.stop();
                let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
                return Err(format!(
                    "port {} (exited: {exited:?}); log:\n{log}",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Runs one command on a fresh connection (authenticating first when the
    /// server has a password) and returns the reply as text; `nil` is "".
    pub fn command(&self, args: &[&str]) -> Result<String, String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
        if let Some(password) = &self.password {
            send(&mut stream, &["AUTH", password])?;
            read_reply(&mut reader)?;
        }
        send(&mut stream, args)?;
        read_reply(&mut reader)
    }

    /// `command`, panicking on error: for test set-up and assertions.
    pub fn cmd(&self, args: &[&str]) -> String {
        self.command(args)
            .unwrap_or_else(|e| panic!("redis {args:?} failed: {e}"))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn send(stream: &mut TcpStream, args: &[&str]) -> Result<(), String> {
    let mut buf = format!("*{}\r\n", args.len());
    for arg in args {
        buf.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(buf.as_bytes()).map_err(|e| e.to_string())
}

/// Just enough RESP2 for simple replies, integers, errors and bulk strings.
fn read_reply(reader: &mut impl BufRead) -> Result<String, String> {
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    let line = line.trim_end_matches("\r\n");
    match line.split_at(line.len().min(1)) {
        ("+", rest) | (":", rest) => Ok(rest.to_owned()),
        ("-", rest) => Err(rest.to_owned()),
        ("$", "-1") => Ok(String::new()),
        ("$", len) => {
            let len: usize = len
                .parse()
                .map_err(|_| format!("bad bulk length {len:?}"))?;
            let mut data = vec![0u8; len + 2];
            reader.read_exact(&mut data).map_err(|e| e.to_string())?;
            data.truncate(len);
            String::from_utf8(data).map_err(|e| e.to_string())
        }
        _ => Err(format!("unexpected reply {line:?}")),
    }
}
