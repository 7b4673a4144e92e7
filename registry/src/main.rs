//! `registry`: serve (the default), check-config, healthcheck.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use registry::config::{Config, LogFormat};

#[derive(Parser)]
#[command(
    version,
    about = "OCI Distribution registry (a drop-in for registry:2)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the registry (the default when no command is given).
    Serve(ConfigArg),
    /// Load and validate the configuration, then exit.
    CheckConfig(ConfigArg),
    /// Probe the local registry's /livez; exit 0 when it answers (for Docker
    /// HEALTHCHECK in images without curl).
    Healthcheck(ConfigArg),
}

#[derive(clap::Args, Default)]
struct ConfigArg {
    /// TOML configuration file; REGISTRY_* environment variables override it.
    #[arg(long, short, env = "REGISTRY_CONFIG_FILE")]
    config: Option<PathBuf>,
}

/// How long in-flight requests (uploads) may take to finish after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

fn load(arg: &ConfigArg) -> Result<Config, String> {
    Config::load(arg.config.as_deref(), std::env::vars())
        .map_err(|e| format!("registry: configuration: {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve(ConfigArg::default()));
    let result = match command {
        Command::Serve(arg) => load(&arg).and_then(serve),
        Command::CheckConfig(arg) => {
            load(&arg).map(|c| println!("configuration ok (listening on {})", c.http.addr))
        }
        Command::Healthcheck(arg) => load(&arg).and_then(|c| healthcheck(&c)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(&config.log.level).unwrap_or_else(|_| "info".into());
    // A closed stderr (a log pipe whose reader went away) must not take
    // requests down with it: by default write errors are reported with
    // eprintln!, which panics on a broken pipe.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn serve(config: Config) -> Result<(), String> {
    init_logging(&config);
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("registry: {e}"))?;
    runtime.block_on(async {
        let running = registry::server::start(&config)
            .await
            .map_err(|e| format!("registry: {e}"))?;
        if let Some(created) = &running.created_user {
            println!(
                "Created {} with user '{}' and password '{}' (shown only this once).",
                config.auth.htpasswd.path.display(),
                created.user,
                created.password
            );
        }
        tracing::info!(
            addr = %running.addr,
            tls = running.tls,
            storage = %config.storage.filesystem.rootdirectory.display(),
            "registry listening"
        );
        let handle = running.shutdown_handle();
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down; finishing in-flight requests");
            let _ = handle.send(true);
        });
        let mut stopped = running.shutdown_handle().subscribe();
        let _ = stopped.wait_for(|s| *s).await;
        running
            .shutdown(SHUTDOWN_GRACE)
            .await
            .map_err(|e| format!("registry: {e}"))
    })
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("signal handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// A plain HTTP/1.1 GET of /livez on the configured port (TLS: a TCP
/// connect only), so scratch images need no curl.
fn healthcheck(config: &Config) -> Result<(), String> {
    let mut addr = config.listen_addr().map_err(|e| e.to_string())?;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let fail = |e: std::io::Error| format!("registry healthcheck: {addr}: {e}");
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(fail)?;
    if config.http.tls.is_some() {
        return Ok(());
    }
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(fail)?;
    stream
        .write_all(b"GET /livez HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(fail)?;
    let mut reply = Vec::new();
    let _ = stream.take(4096).read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply);
    if reply.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(format!(
            "registry healthcheck: {addr}: unexpected reply {:?}",
            reply.lines().next().unwrap_or("")
        ))
    }
}
