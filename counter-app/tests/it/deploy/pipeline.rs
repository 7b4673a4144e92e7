//! The deploy pipeline end to end on a single-node swarm.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{compose_dir, docker_lock, greeting, http_get};
use crate::support::docker::{docker, static_binary, try_docker, Resources};
use crate::support::swarm::{self, DockerConfig, Stack, Task};
use crate::support::{free_port, registry_image, stack_images, unique_name, wait_for};

const USER: &str = "deployer";
const PASSWORD: &str = "e2e-Secret-pass_42";
const CONVERGE: Duration = Duration::from_secs(180);

fn log(t0: Instant, message: &str) {
    eprintln!("[e2e {:>6.1}s] {message}", t0.elapsed().as_secs_f64());
}

/// compose/deploy.sh with `env`, the password on stdin; (success, output).
fn deploy(config: &DockerConfig, env: &[(&str, &str)]) -> (bool, String) {
    let mut child = Command::new(compose_dir().join("deploy.sh"))
        .env("DOCKER_CONFIG", config.path())
        .env_remove("REGISTRY_PASSWORD")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run compose/deploy.sh");
    use std::io::Write;
    writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The htpasswd file for the registry, made by the project's own htpasswd
/// CLI (bcrypt, password on stdin).
fn write_htpasswd(path: &Path) {
    let mut child = Command::new(static_binary("htpasswd"))
        .args(["-B", "-i", "-c"])
        .arg(path)
        .arg(USER)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run htpasswd");
    use std::io::Write;
    writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "htpasswd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// HEAD `url` over HTTPS with curl (the registry's certificate is
/// self-signed: -k), credentials given on curl's stdin, never in its argv.
/// (status, response headers).
fn curl_head(url: &str, credentials: Option<(&str, &str)>) -> (u16, String) {
    let mut child = Command::new("curl")
        .args(["-sk", "-I", "--max-time", "10", "-K", "-", url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run curl");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        if let Some((user, password)) = credentials {
            writeln!(stdin, "user = \"{user}:{password}\"").unwrap();
        }
        // Accept headers as docker sends them.
        writeln!(
            stdin,
            "header = \"Accept: application/vnd.docker.distribution.manifest.v2+json\""
        )
        .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let headers = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no HTTP answer from {url}: {headers}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    (status, headers)
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// GET / on every task's host port, in turn, `rounds` times: the counter must
/// go up by one on each request, whoever answers. Returns the hostnames seen
/// and the last count.
fn count_through_tasks(
    tasks: &[Task],
    rounds: usize,
    mut last: Option<u64>,
) -> (BTreeSet<String>, u64) {
    let mut hosts = BTreeSet::new();
    for _ in 0..rounds {
        for task in tasks {
            let port = task
                .host_port
                .unwrap_or_else(|| panic!("task {} has no host port", task.id));
            let reply = http_get(addr(port), "/").unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(reply.status, 200, "{}", reply.body);
            let (count, host) = greeting(&reply.body);
            if let Some(previous) = last {
                assert_eq!(
                    count,
                    previous + 1,
                    "the shared counter skipped: {}",
                    reply.body
                );
            }
            last = Some(count);
            hosts.insert(host);
        }
    }
    (hosts, last.expect("at least one request"))
}

/// The container of each task, with its health status (the Docker
/// HEALTHCHECK of the image, as the stack file configures it).
fn health_of(tasks: &[Task]) -> Vec<String> {
    tasks
        .iter()
        .map(|t| {
            try_docker(&["inspect", "-f", "{{.State.Health.Status}}", &t.container])
                .unwrap_or_else(|e| e)
        })
        .collect()
}

/// Runs `script` in a busybox container on `network`; (exit ok, output).
fn in_network(client: &str, network: &str, script: &str) -> (bool, String) {
    let out = Command::new("docker")
        .args([
            "run",
            "--rm",
            "--network",
            network,
            client,
            "sh",
            "-c",
            script,
        ])
        .output()
        .expect("cannot run docker");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text.trim().to_owned())
}

/// What this machine's swarm cannot do, probed for real with a throwaway
/// service; returns the report lines (printed by the test).
fn probe_unsupported_features(
    image: &str,
    config: &DockerConfig,
    network: &str,
    client: &str,
    prefix: &str,
) -> Vec<String> {
    let mut report = Vec::new();
    let ipvs = Path::new("/proc/net/ip_vs").exists();
    let name = format!("{prefix}-probe");
    let port = free_port();
    let publish = format!("published={port},target=8000");
    // A vip service with an ingress-published port, and a placement limit
    // of 1 per node for 2 replicas (the seed's max_replicas_per_node case).
    config.docker(
        &[
            "service",
            "create",
            "--detach",
            "--quiet",
            "--with-registry-auth",
            "--name",
            &name,
            "--network",
            network,
            "--publish",
            &publish,
            "--replicas",
            "2",
            "--replicas-max-per-node",
            "1",
            "--health-interval",
            "1s",
            "--env",
            "REDIS_HOST=redis",
            image,
        ],
        "",
    );
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let running = wait_for("the probe's first task", CONVERGE, || {
            let tasks = swarm::tasks(&name);
            (tasks.iter().filter(|t| t.state == "running").count() == 1).then_some(tasks)
        });

        // 1. The ingress routing mesh: the published port on 127.0.0.1.
        let ingress = http_get(addr(port), "/");
        match (&ingress, ipvs) {
            (Err(e), false) => report.push(format!(
                "ingress routing mesh (published port {port}, mode ingress): CANNOT WORK HERE: \
                 {e}. Why: the kernel has no IPVS (/proc/net/ip_vs is missing), which the mesh \
                 needs to forward a node's published port to the tasks. Used instead: \
                 mode: host ports (compose/docker-compose.swarm.single-node.yml)."
            )),
            (Ok(r), _) => report.push(format!(
                "ingress routing mesh: works here (status {})",
                r.status
            )),
            (Err(e), true) => report.push(format!(
                "ingress routing mesh: fails although IPVS exists: {e}"
            )),
        }

        // 2. endpoint_mode vip: the service name resolves to a virtual IP.
        let (vip_ok, vip_out) = in_network(
            client,
            network,
            &format!("timeout 10 wget -q -O - http://{name}:8000/"),
        );
        let (task_ok, task_out) = in_network(
            client,
            network,
            &format!("timeout 10 wget -q -O - http://tasks.{name}:8000/"),
        );
        assert!(
            task_ok,
            "a task's own address must answer on the overlay: {task_out}"
        );
        if vip_ok {
            report.push("endpoint_mode vip: works here".to_owned());
        } else {
            assert!(!ipvs, "vip fails although IPVS exists: {vip_out}");
            report.push(format!(
                "endpoint_mode vip (service virtual IP): CANNOT WORK HERE: `wget http://{name}:8000/` \
                 from a container on the overlay network: {vip_out:?}, while \
                 http://tasks.{name}:8000/ answers. Why: the virtual IP is an IPVS \
                 virtual server, and the kernel has no IPVS. Used instead: \
                 endpoint_mode: dnsrr."
            ));
        }

        // 3. max_replicas_per_node: more replicas than nodes × limit stay Pending.
        let pending = try_docker(&[
            "service",
            "ps",
            "--no-trunc",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.CurrentState}} | {{.Error}}",
            &name,
        ])
        .unwrap_or_else(|e| e);
        let stuck: Vec<&str> = pending
            .lines()
            .filter(|l| l.starts_with("Pending"))
            .collect();
        assert_eq!(
            stuck.len(),
            1,
            "2 replicas, 1 per node, 1 node: one task must stay pending:\n{pending}"
        );
        report.push(format!(
            "max_replicas_per_node on a single node: the replicas above the limit stay \
             Pending ({}), and a start-first update then never completes. Used instead: \
             MAX_REPLICAS_PER_NODE=0 (no limit) on a single node.",
            stuck[0].trim()
        ));
        running
    }));
    let _ = try_docker(&["service", "rm", &name]);
    // Its tasks leave the network before the stack removes it.
    wait_for(
        "the probe's containers to go",
        Duration::from_secs(60),
        || {
            try_docker(&[
                "ps",
                "-aq",
                "--filter",
                &format!("label=com.docker.swarm.service.name={name}"),
            ])
            .map(|out| out.is_empty())
            .unwrap_or(false)
            .then_some(())
        },
    );
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    report
}

#[test]
#[ignore = "needs docker, openssl and STATIC_BIN_DIR (run scripts/test.sh)"]
fn registry_deploy_update_scale_and_remove_on_a_single_node_swarm() {
    let _serial = docker_lock();
    let t0 = Instant::now();
    log(t0, &swarm::ensure_swarm());
    let mut resources = Resources::new();
    let prefix = unique_name("cdeploy");

    // Images: the registry's, a Redis with redis-cli, a busybox client.
    let registry_tag = format!("{prefix}-registry:test");
    let redis_tag = format!("{prefix}-redis:test");
    let client_tag = format!("{prefix}-client:test");
    registry_image::build(&mut resources, &registry_tag, &[]);
    stack_images::build_redis(&mut resources, &redis_tag);
    stack_images::build_client(&mut resources, &client_tag);
    log(t0, "images built");

    // The registry as a stack from compose/registry.yml: htpasswd and TLS
    // from secrets, named volume, healthcheck, host-mode port on 127.0.0.1.
    let secrets = tempfile::tempdir().unwrap();
    let htpasswd = secrets.path().join("htpasswd");
    write_htpasswd(&htpasswd);
    let certs = swarm::make_certificates(secrets.path());
    let registry_port = free_port();
    let registry = format!("127.0.0.1:{registry_port}");
    let registry_stack = Stack::track(&format!("{prefix}-reg"));
    let out = Command::new("docker")
        .args(["stack", "deploy", "-c"])
        .arg(compose_dir().join("registry.yml"))
        .arg(&registry_stack.name)
        .env("REGISTRY_IMAGE", &registry_tag)
        .env("REGISTRY_PORT", registry_port.to_string())
        .env("REGISTRY_PUBLISH_MODE", "host")
        .env("REGISTRY_HTPASSWD_FILE", &htpasswd)
        .env("REGISTRY_TLS_CERT_FILE", &certs.cert)
        .env("REGISTRY_TLS_KEY_FILE", &certs.key)
        .env("HEALTH_INTERVAL", "1s")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "registry stack deploy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let registry_tasks =
        swarm::wait_converged(&registry_stack.service("registry"), 1, |_| true, CONVERGE);
    assert_eq!(
        health_of(&registry_tasks),
        ["healthy"],
        "registry healthcheck"
    );
    let secrets_in_use = docker(&[
        "secret",
        "ls",
        "--filter",
        &format!("label=com.docker.stack.namespace={}", registry_stack.name),
        "--format",
        "{{.Name}}",
    ]);
    assert_eq!(secrets_in_use.lines().count(), 3, "{secrets_in_use}");
    log(t0, &format!("registry stack healthy on https://{registry}"));

    // A wrong password is refused.
    let wrong = DockerConfig::new();
    let login = wrong.run(
        &["login", "--username", USER, "--password-stdin", &registry],
        "not-the-password",
    );
    assert!(!login.status.success(), "a wrong password logged in");

    // The pipeline: build, login, push, stack deploy, wait healthy, smoke.
    let config = DockerConfig::new();
    // Dropped after the stack (declared before it): on a panic too, every
    // image of the pushed repository goes, the tags and what the tasks
    // pulled by digest.
    let pushed = RepositoryImages(format!("{registry}/counter-app"));
    let stack = Stack::track(&prefix);
    let app = stack.service("app");
    let static_dir = crate::support::docker::static_bin_dir();
    let static_dir = static_dir.to_str().unwrap();
    let common: Vec<(&str, &str)> = vec![
        ("DOCKER_REGISTRY", registry.as_str()),
        ("REGISTRY_USER", USER),
        ("STACK", prefix.as_str()),
        ("SINGLE_NODE", "1"),
        ("REDIS_IMAGE", redis_tag.as_str()),
        ("STATIC_BIN_DIR", static_dir),
        ("HEALTH_INTERVAL", "1s"),
        ("UPDATE_DELAY", "2s"),
        ("UPDATE_MONITOR", "3s"),
        ("DEPLOY_TIMEOUT", "180"),
    ];
    let mut env = common.clone();
    env.extend([("TAG", "v1"), ("VERSION", "1.0.0-e2e")]);
    let (ok, output) = deploy(&config, &env);
    eprintln!("--- compose/deploy.sh (TAG=v1) ---\n{output}---");
    assert!(ok, "deploy.sh failed");
    for step in 1..=6 {
        assert!(
            output.contains(&format!("==> [{step}/6]")),
            "step {step} missing"
        );
    }
    assert!(output.contains("4 replicas healthy"), "{output}");
    assert!(!output.contains(PASSWORD), "the password was printed");
    log(t0, "deploy.sh v1 done");

    // Anonymous pulls are refused (the image exists: this is not a 404).
    // Docker's own message is the one of its last attempt (for a registry on
    // 127.0.0.1 it falls back from HTTPS to plain HTTP), so the registry's
    // answer is checked over HTTPS as well.
    let anonymous = DockerConfig::new();
    let image_v1 = format!("{registry}/counter-app:v1");
    let pull = anonymous.run(&["pull", &image_v1], "");
    let pull_err = String::from_utf8_lossy(&pull.stderr);
    assert!(!pull.status.success(), "anonymous pull succeeded");
    let manifest = format!("https://{registry}/v2/counter-app/manifests/v1");
    let (status, headers) = curl_head(&manifest, None);
    assert_eq!(status, 401, "anonymous manifest request: {headers}");
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("www-authenticate: basic"),
        "{headers}"
    );
    let (status, headers) = curl_head(&manifest, Some((USER, PASSWORD)));
    assert_eq!(status, 200, "authenticated manifest request: {headers}");
    // With the login deploy.sh made, the same pull works.
    config.docker(&["pull", &image_v1], "");
    log(
        t0,
        &format!(
            "anonymous pull refused (HTTPS 401; docker: {})",
            pull_err.trim()
        ),
    );

    // 4 replicas, each running the pushed v1 and healthy.
    let tasks = swarm::wait_converged(&app, 4, |img| img.contains(":v1@sha256:"), CONVERGE);
    assert_eq!(health_of(&tasks), ["healthy"; 4]);
    let (hosts, count) = count_through_tasks(&tasks, 3, None);
    assert_eq!(hosts.len(), 4, "every replica answers: {hosts:?}");
    log(
        t0,
        &format!("4 replicas healthy; GET / counted to {count} across {hosts:?}"),
    );

    // Inside the overlay network, the service name spreads requests (dnsrr).
    let network = format!("{prefix}_default");
    let (ok, out) = in_network(
        &client_tag,
        &network,
        "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do wget -q -O - http://app:8000/ || exit 1; done",
    );
    assert!(ok, "{out}");
    let by_name: BTreeSet<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("Served by: "))
        .collect();
    assert!(
        by_name.len() >= 2,
        "12 requests to http://app:8000/ all went to {by_name:?}"
    );
    log(
        t0,
        &format!(
            "http://app:8000/ from the overlay reached {} replicas",
            by_name.len()
        ),
    );

    // What cannot work on this machine, probed for real.
    let report = probe_unsupported_features(&image_v1, &config, &network, &client_tag, &prefix);
    eprintln!("=== Swarm features on this machine ===");
    for line in &report {
        eprintln!("  * {line}");
    }
    eprintln!("  (everything else in this test ran as in production)");

    // A new version rolls out through a start-first rolling update.
    let mut env = common.clone();
    env.extend([("TAG", "v2"), ("VERSION", "2.0.0-e2e")]);
    let (ok, output) = deploy(&config, &env);
    eprintln!("--- compose/deploy.sh (TAG=v2) ---\n{output}---");
    assert!(ok, "deploy.sh v2 failed");
    let tasks = swarm::wait_converged(&app, 4, |img| img.contains(":v2@sha256:"), CONVERGE);
    assert_eq!(health_of(&tasks), ["healthy"; 4]);
    let update = docker(&["service", "inspect", "-f", "{{.UpdateStatus.State}}", &app]);
    assert_eq!(update, "completed");
    let version = docker(&[
        "inspect",
        "-f",
        "{{index .Config.Labels \"org.opencontainers.image.version\"}}",
        &tasks[0].container,
    ]);
    assert_eq!(version, "2.0.0-e2e");
    // Redis kept the count through the update.
    let (hosts, after_update) = count_through_tasks(&tasks, 1, None);
    assert!(
        after_update > count,
        "the count went from {count} to {after_update}"
    );
    assert_eq!(hosts.len(), 4);
    log(t0, "rolled out v2");

    // Scale 4 → 1 → 4.
    docker(&["service", "scale", &format!("{app}=1")]);
    let one = swarm::wait_converged(&app, 1, |img| img.contains(":v2@"), CONVERGE);
    let (_, c) = count_through_tasks(&one, 2, Some(after_update));
    docker(&["service", "scale", &format!("{app}=4")]);
    let four = swarm::wait_converged(&app, 4, |img| img.contains(":v2@"), CONVERGE);
    assert_eq!(health_of(&four), ["healthy"; 4]);
    let (hosts, _) = count_through_tasks(&four, 1, Some(c));
    assert_eq!(hosts.len(), 4);
    log(t0, "scaled 4 -> 1 -> 4");

    // docker stack rm removes everything (volumes after the containers).
    let left = stack.remove(Duration::from_secs(120));
    assert!(left.is_empty(), "after stack rm: {left:?}");
    let left = registry_stack.remove(Duration::from_secs(120));
    assert!(left.is_empty(), "after stack rm of the registry: {left:?}");
    log(t0, "both stacks removed without leftovers");

    pushed.remove();
    assert_eq!(docker(&["images", "-q", &pushed.0]), "");
}

/// Every local image of a repository, removed on drop.
struct RepositoryImages(String);

impl RepositoryImages {
    fn remove(&self) {
        let ids = try_docker(&["images", "-q", &self.0]).unwrap_or_default();
        for id in ids.lines().collect::<BTreeSet<_>>() {
            let _ = try_docker(&["rmi", "-f", id]);
        }
    }
}

impl Drop for RepositoryImages {
    fn drop(&mut self) {
        self.remove();
    }
}
