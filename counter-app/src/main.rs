//! `counter-app`: the sample service shipped through the private registry.
//!
//! * `counter-app [serve]`: run the HTTP server (configured by environment).
//! * `counter-app healthcheck`: probe the local server's `/health`; exit 0/1.

mod config;
mod health_probe;
mod hostname;
mod metrics;
mod redis_client;
mod routes;
mod server;
mod shutdown;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use tracing_subscriber::EnvFilter;

const USAGE: &str = "\
usage: counter-app [serve]      run the HTTP server
       counter-app healthcheck  exit 0 if the local server's /health answers 200, else 1

Configuration (environment):
  LISTEN_ADDR            address to listen on (default 0.0.0.0:8000)
  REDIS_URL              redis://[:password@]host[:port][/db]
  REDIS_HOST, REDIS_PORT used when REDIS_URL is unset (default redis:6379)
  REDIS_PASSWORD         or REDIS_PASSWORD_FILE (e.g. a Swarm secret)
  REDIS_TIMEOUT_MS       bound on each Redis call and connect (default 1000)
  COUNTER_KEY            Redis key of the counter (default hits)
  SHUTDOWN_TIMEOUT_SECS  longest drain after SIGTERM (default 8)
  RUST_LOG               log filter (default info)";

/// How long `healthcheck` waits for connect and answer; below Docker's
/// HEALTHCHECK timeout in the Dockerfile, so the probe reports its own error.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] | ["serve"] => serve(),
        ["healthcheck"] => healthcheck(),
        ["-h" | "--help" | "help"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        ["-V" | "--version"] => {
            println!("counter-app {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("counter-app: unexpected arguments {args:?}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn serve() -> ExitCode {
    init_logging();
    let config = match config::Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            tracing::error!("configuration error: {err}");
            return ExitCode::FAILURE;
        }
    };
    tracing::debug!(?config, "configuration");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!("cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(server::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err}");
            ExitCode::FAILURE
        }
    }
}

fn healthcheck() -> ExitCode {
    let listen = match config::listen_addr(&|name| std::env::var(name).ok()) {
        Ok(addr) => addr,
        Err(err) => {
            eprintln!("healthcheck: {err}");
            return ExitCode::FAILURE;
        }
    };
    // Docker keeps this output in `docker inspect` (State.Health.Log).
    match health_probe::probe(config::probe_addr(listen), PROBE_TIMEOUT) {
        Ok(status) => {
            println!("healthy: {status}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("unhealthy: {err}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal())
        .with_writer(std::io::stdout)
        .init();
}
