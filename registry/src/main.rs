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
    /// Garbage collection: remove blobs (and with --delete-untagged,
    /// manifests) that nothing references, and stale upload sessions. Safe
    /// while the registry serves.
    Gc(GcArgs),
    /// Verify every blob's content against its digest and every link; exit 1
    /// when anything is corrupt or dangling.
    Scrub(ConfigArg),
    /// List in the referrers API the artifacts (manifests with a subject)
    /// that another registry, such as registry:2, stored; run once after
    /// moving its storage here. Only adds, safe while the registry serves.
    IndexReferrers(ConfigArg),
    /// Apply `[[policies.retention]]`: print for every tag of the governed
    /// repositories whether it stays and why; with --apply remove the tags
    /// that rules with `dry_run = false` do not keep. The manifests and
    /// blobs go with the next gc deleting untagged manifests.
    Retention(RetentionArgs),
    /// Recompute what every `[[policies.quota]]` scope holds from the
    /// storage's links and print it beside the usage quotas are checked
    /// against, with the drift between them; with --apply correct the
    /// usage. Safe while the registry serves.
    Usage(UsageArgs),
}

#[derive(clap::Args)]
struct UsageArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Correct the usage to what the links say (without it, nothing is
    /// written).
    #[arg(long)]
    apply: bool,
}

#[derive(clap::Args)]
struct RetentionArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Remove what rules with `dry_run = false` do not keep (without it,
    /// nothing is removed).
    #[arg(long)]
    apply: bool,
}

#[derive(clap::Args)]
struct GcArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// List what would be removed and how many bytes, and remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// Also remove manifests that no tag reaches (default: gc.delete_untagged).
    #[arg(long)]
    delete_untagged: bool,
    /// Keep anything written more recently than this, e.g. 1h (default:
    /// gc.grace_period).
    #[arg(long, value_parser = humantime::parse_duration)]
    grace_period: Option<Duration>,
    /// Print only the summary line, not one line per removed item.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(clap::Args, Default)]
struct ConfigArg {
    /// Configuration file, as registry:2's `registry serve <file>`: its YAML
    /// (`version: 0.1`) or our TOML.
    file: Option<PathBuf>,
    /// The same, as an option; REGISTRY_* environment variables override it.
    #[arg(long, short, env = "REGISTRY_CONFIG_FILE")]
    config: Option<PathBuf>,
}

/// Set in the image (`registry/Dockerfile`): look for registry:3's and
/// registry:2's mounted files, and default to the image's paths otherwise.
/// Not done on a host, where Debian's docker-registry package keeps its own
/// file at /etc/docker/registry/config.yml.
const IMAGE_DEFAULTS: &str = "REGISTRY_DEFAULTS";

/// The image's defaults (what registry:2's image has), beneath the
/// environment.
const IMAGE_ENV: [(&str, &str); 3] = [
    ("REGISTRY_HTTP_ADDR", ":5000"),
    (
        "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
        "/var/lib/registry",
    ),
    ("REGISTRY_AUTH_HTPASSWD_PATH", "/auth/htpasswd"),
];

/// The file to read: the argument, `--config`, `REGISTRY_CONFIGURATION_PATH`
/// (registry:2's image variable), then in the image the default paths.
fn config_file(arg: &ConfigArg, image: bool) -> Option<PathBuf> {
    arg.file
        .clone()
        .or_else(|| arg.config.clone())
        .or_else(|| {
            std::env::var_os("REGISTRY_CONFIGURATION_PATH")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
        })
        .or_else(|| {
            image.then(|| {
                registry::config::distribution::DEFAULT_PATHS
                    .iter()
                    .map(PathBuf::from)
                    .find(|p| p.exists())
            })?
        })
}

fn environment(file: Option<&PathBuf>, image: bool) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    if image && file.is_none() {
        env.extend(
            IMAGE_ENV
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
    }
    env.extend(std::env::vars().filter(|(k, _)| k != IMAGE_DEFAULTS));
    env
}

fn load(arg: &ConfigArg) -> Result<Config, String> {
    let image = std::env::var(IMAGE_DEFAULTS).is_ok_and(|v| v == "image");
    let file = config_file(arg, image);
    Config::load(file.as_deref(), environment(file.as_ref(), image))
        .map_err(|e| format!("registry: configuration: {e}"))
}

/// `registry check-config`: every key's effective value and where it came
/// from, secrets masked, then the warnings.
fn check_config(arg: &ConfigArg) -> Result<(), String> {
    let image = std::env::var(IMAGE_DEFAULTS).is_ok_and(|v| v == "image");
    let file = config_file(arg, image);
    let env = environment(file.as_ref(), image);
    let (config, rows) = registry::config::distribution::check(file.as_deref(), env)
        .map_err(|e| format!("registry: configuration: {e}"))?;
    match &file {
        Some(f) => println!("# configuration file {}", f.display()),
        None => println!("# no configuration file: defaults and REGISTRY_* variables"),
    }
    let width = rows.iter().map(|r| r.key.len()).max().unwrap_or(0);
    for row in &rows {
        println!("{:width$}  {:40}  # {}", row.key, row.value, row.source);
    }
    for key in &config.ignored_env {
        println!("# warning: {key}: names no setting of this registry; ignored");
    }
    for warning in &config.warnings {
        println!("# warning: {warning}");
    }
    // Host names resolve now, as they will at start.
    let listening = match config
        .listen()
        .map_err(|e| format!("registry: configuration: {e}"))?
    {
        registry::config::listen::Listen::Unix(path) => format!("unix:{}", path.display()),
        tcp => {
            let addrs = tcp
                .resolve()
                .map_err(|e| format!("registry: configuration: http.addr: {e}"))?;
            let addrs: Vec<String> = addrs.iter().map(ToString::to_string).collect();
            format!("{} = {}", config.http.addr, addrs.join(", "))
        }
    };
    if let Some(addrs) = config
        .metrics_addrs()
        .map_err(|e| format!("registry: configuration: {e}"))?
    {
        let addrs: Vec<String> = addrs.iter().map(ToString::to_string).collect();
        println!("# metrics listen on {}", addrs.join(", "));
    }
    println!("configuration ok (listening on {listening})");
    Ok(())
}

/// glibc gives each thread that allocates its own arena (up to 8 per core),
/// and each keeps the memory freed into it. Upload blocks are allocated on
/// the runtime's threads and freed on the blocking pool's, so with many
/// arenas a 2 GiB push and pull left ~48 MiB resident; with one, ~24 MiB,
/// at the same throughput (measured with bench/registry.sh's client).
#[cfg(target_env = "gnu")]
fn one_malloc_arena() {
    // SAFETY: mallopt only sets an allocator parameter; it is called first
    // thing in main, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

#[cfg(not(target_env = "gnu"))]
fn one_malloc_arena() {}

fn main() -> ExitCode {
    one_malloc_arena();
    // One TLS crypto provider for the whole process (the listener and the S3
    // client): ring. The binary is built without aws-lc to stay small.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve(ConfigArg::default()));
    let result = match command {
        Command::Serve(arg) => load(&arg).and_then(serve),
        Command::CheckConfig(arg) => check_config(&arg),
        Command::Healthcheck(arg) => load(&arg).and_then(|c| healthcheck(&c)),
        Command::Gc(args) => load(&args.config).and_then(|c| gc(c, &args)),
        Command::IndexReferrers(arg) => load(&arg).and_then(index_referrers),
        Command::Retention(args) => load(&args.config).and_then(|c| retention(c, args.apply)),
        Command::Usage(args) => load(&args.config).and_then(|c| usage(c, args.apply)),
        Command::Scrub(arg) => {
            return match load(&arg).and_then(scrub) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(message) => {
                    eprintln!("{message}");
                    ExitCode::from(2)
                }
            }
        }
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
    init_logging_with(config, None);
}

/// Log lines to stderr at the configured level and, with `tracing`, spans
/// to the OpenTelemetry exporter, each through its own filter.
fn init_logging_with(config: &Config, tracing: Option<&registry::otel::Tracing>) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;
    let filter =
        tracing_subscriber::EnvFilter::try_new(&config.log.level).unwrap_or_else(|_| "info".into());
    // A closed stderr (a log pipe whose reader went away) must not take
    // requests down with it: by default write errors are reported with
    // eprintln!, which panics on a broken pipe.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    let fmt = match config.log.format {
        LogFormat::Json => fmt.json().boxed(),
        LogFormat::Text => fmt.boxed(),
    };
    let otel = tracing.map(|t| {
        tracing_opentelemetry::layer()
            .with_tracer(t.tracer())
            .with_filter(tracing_subscriber::filter::filter_fn(
                registry::otel::exported,
            ))
    });
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel)
        .init();
}

fn serve(config: Config) -> Result<(), String> {
    let tracing = registry::otel::Tracing::from_env().map_err(|e| format!("registry: {e}"))?;
    init_logging_with(&config, tracing.as_ref());
    if tracing.is_some() {
        let endpoint = [
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ]
        .iter()
        .find_map(|k| std::env::var(k).ok())
        .unwrap_or_else(|| "http://localhost:4318".into());
        tracing::info!(%endpoint, "exporting OpenTelemetry traces (OTLP/HTTP)");
    }
    let served = serve_until_stopped(config);
    if let Some(t) = tracing {
        t.shutdown();
    }
    served
}

fn serve_until_stopped(config: Config) -> Result<(), String> {
    // File I/O runs on the blocking pool; a bounded pool bounds the memory
    // of a burst (each thread keeps its own malloc arena) at no cost in
    // throughput on a machine with a handful of cores.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(32)
        .build()
        .map_err(|e| format!("registry: {e}"))?;
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
        let listening = match &running.unix {
            Some(path) => format!("unix:{}", path.display()),
            None => running.addr.to_string(),
        };
        tracing::info!(
            addr = %listening,
            tls = running.tls,
            storage = %config.storage.filesystem.rootdirectory.display(),
            "registry listening"
        );
        let handle = running.shutdown_handle();
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down; finishing in-flight requests");
            handle.cancel();
        });
        running.shutdown_handle().cancelled().await;
        running
            .shutdown(config.http.drain_timeout)
            .await
            .map_err(|e| format!("registry: {e}"))
    })
}

/// Runs maintenance command `name` on the configured storage, on a runtime
/// of its own; errors come back as one line naming the command.
fn on_storage<T, E, Fut>(
    config: &Config,
    name: &str,
    run: impl FnOnce(registry::storage::Storage) -> Fut,
) -> Result<T, String>
where
    E: std::fmt::Display,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    init_logging(config);
    let fail = |e: &dyn std::fmt::Display| format!("registry {name}: {e}");
    let runtime = tokio::runtime::Runtime::new().map_err(|e| fail(&e))?;
    runtime.block_on(async {
        let storage = registry::storage::backend::open(&config.storage).map_err(|e| fail(&e))?;
        run(storage).await.map_err(|e| fail(&e))
    })
}

fn retention(config: Config, apply: bool) -> Result<(), String> {
    let policies = registry::policy::Policies::from_config(&config.policies);
    if policies.retention.is_empty() {
        return Err(
            "registry retention: no [[policies.retention]] rules in the configuration".into(),
        );
    }
    let report = on_storage(&config, "retention", |storage| async move {
        registry::policy::retention::run(&storage, &policies.retention, &policies.immutable, apply)
            .await
    })?;
    for t in &report.tags {
        println!("{}", t.line());
    }
    for u in &report.untagged {
        println!("{}", u.line());
    }
    println!("{}", report.summary());
    if report.removed() > 0 {
        println!("the removed tags' manifests and blobs go with the next `registry gc --delete-untagged` (or online gc with gc.delete_untagged)");
    }
    Ok(())
}

fn usage(config: Config, apply: bool) -> Result<(), String> {
    let quotas = registry::policy::Policies::from_config(&config.policies).quota;
    if quotas.is_empty() {
        return Err("registry usage: no [[policies.quota]] rules or policies.total_max_bytes in the configuration".into());
    }
    let lines = on_storage(&config, "usage", |storage| async move {
        registry::quota::usage_report(&storage, &quotas, apply).await
    })?;
    for line in lines {
        println!("{line}");
    }
    Ok(())
}

fn gc(config: Config, args: &GcArgs) -> Result<(), String> {
    let purging = &config.storage.maintenance.uploadpurging;
    let options = registry::storage::maintenance::gc::Options {
        dry_run: args.dry_run,
        delete_untagged: args.delete_untagged || config.gc.delete_untagged,
        grace: args.grace_period.unwrap_or(config.gc.grace_period),
        upload_max_age: purging.enabled.then_some(purging.age),
        untagged_after: registry::policy::retention::untagged_windows(&config.policies.retention),
    };
    let quotas = registry::policy::Policies::from_config(&config.policies).quota;
    let dry_run = args.dry_run;
    let report = on_storage(&config, "gc", |storage| async move {
        let report = registry::storage::maintenance::gc::run(&storage, &options, None)
            .await
            .map_err(|e| e.to_string())?;
        if !dry_run {
            // What the collection removed leaves the quota scopes too.
            registry::quota::Ledger::new(storage)
                .after_gc(&quotas)
                .await
                .map_err(|e| format!("collected, but quota usage not reconciled: {e}"))?;
        }
        Ok::<_, String>(report)
    })?;
    if !args.quiet {
        for line in report.details() {
            println!("{line}");
        }
    }
    println!("{report}");
    Ok(())
}

/// Ok(true) when the store is clean.
fn scrub(config: Config) -> Result<bool, String> {
    let report = on_storage(&config, "scrub", |storage| async move {
        registry::storage::maintenance::scrub::run(&storage).await
    })?;
    for problem in &report.problems {
        println!("{problem}");
    }
    println!("{report}");
    Ok(report.is_clean())
}

fn index_referrers(config: Config) -> Result<(), String> {
    let report = on_storage(&config, "index-referrers", |storage| async move {
        registry::storage::maintenance::referrers_index::run(&storage).await
    })?;
    println!("{report}");
    Ok(())
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
    let listen = config.listen().map_err(|e| e.to_string())?;
    if let registry::config::listen::Listen::Unix(path) = &listen {
        let shown = path.display().to_string();
        let fail = |e: std::io::Error| format!("registry healthcheck: {shown}: {e}");
        let stream = std::os::unix::net::UnixStream::connect(path).map_err(fail)?;
        return probe(stream, &shown);
    }
    let mut addr = config.listen_addr().map_err(|e| e.to_string())?;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let fail = |e: std::io::Error| format!("registry healthcheck: {addr}: {e}");
    let stream =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(fail)?;
    if config.http.tls.is_some() {
        return Ok(());
    }
    probe(stream, &addr.to_string())
}

/// `GET /livez` on a connected stream; 200 is healthy.
fn probe<S: Read + Write + ProbeTimeout>(mut stream: S, shown: &str) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("registry healthcheck: {shown}: {e}");
    stream.read_timeout(Duration::from_secs(3)).map_err(fail)?;
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
            "registry healthcheck: {shown}: unexpected reply {:?}",
            reply.lines().next().unwrap_or("")
        ))
    }
}

trait ProbeTimeout {
    fn read_timeout(&self, d: Duration) -> std::io::Result<()>;
}

impl ProbeTimeout for std::net::TcpStream {
    fn read_timeout(&self, d: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(d))
    }
}

impl ProbeTimeout for std::os::unix::net::UnixStream {
    fn read_timeout(&self, d: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(d))
    }
}
