//! The `counter-app` binary under test, run as a child process exactly as it
//! runs in production (environment config, signals, stdout logging).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const LISTENING: &str = "listening on http://";

/// Settings the app reads; cleared from the inherited environment so the
/// developer's shell cannot change what a test sees.
const APP_VARS: &[&str] = &[
    "LISTEN_ADDR",
    "REDIS_URL",
    "REDIS_HOST",
    "REDIS_PORT",
    "REDIS_PASSWORD",
    "REDIS_PASSWORD_FILE",
    "REDIS_TIMEOUT_MS",
    "COUNTER_KEY",
    "SHUTDOWN_TIMEOUT_SECS",
    "RUST_LOG",
];

/// Path of the binary cargo built for this test run. Looked up at run time so
/// this module also compiles in crates that only reuse the docker helpers.
pub fn binary() -> &'static str {
    match option_env!("CARGO_BIN_EXE_counter-app") {
        Some(path) => path,
        None => panic!("the counter-app binary is only known to counter-app's own tests"),
    }
}

/// Runs `counter-app` with `args` and only the given app settings.
pub fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(binary());
    cmd.args(args);
    for var in APP_VARS {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd
}

pub struct App {
    child: Child,
    pub addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
}

impl App {
    /// Starts the server on an ephemeral port of 127.0.0.1 (unless `env`
    /// sets LISTEN_ADDR) and waits for its "listening" log line.
    pub fn start(env: &[(&str, &str)]) -> Self {
        let mut env = env.to_vec();
        if !env.iter().any(|(k, _)| *k == "LISTEN_ADDR") {
            env.push(("LISTEN_ADDR", "127.0.0.1:0"));
        }
        let mut child = command(&[], &env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start counter-app");

        let logs = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(rest) = line.split(LISTENING).nth(1) {
                        let addr = rest.split_whitespace().next().unwrap_or_default();
                        let _ = addr_tx.send(addr.parse::<SocketAddr>());
                    }
                    logs.lock().unwrap().push(line);
                }
            });
        }
        {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    logs.lock().unwrap().push(format!("stderr: {line}"));
                }
            });
        }

        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = loop {
            match addr_rx.recv_timeout(Duration::from_millis(50)) {
                Ok(Ok(addr)) => break addr,
                Ok(Err(err)) => panic!("bad address in the listening line: {err}"),
                Err(_) => {}
            }
            if let Ok(Some(status)) = child.try_wait() {
                // Give the reader threads a moment to collect the last lines.
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "counter-app exited before listening ({status}):\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                panic!("counter-app did not report listening within {READY_TIMEOUT:?}");
            }
        };
        Self { child, addr, logs }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn sigterm(&self) {
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM) failed");
    }

    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("wait on counter-app")
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        super::wait_for("counter-app to exit", timeout, || self.try_exit_status())
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
