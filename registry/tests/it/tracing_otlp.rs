//! OpenTelemetry traces over OTLP/HTTP from the `registry` binary, set up
//! with the standard OTEL_* variables only. The collector is an OTLP/HTTP
//! endpoint started by the test that decodes what arrives with the
//! protocol's own protobuf definitions (opentelemetry-proto), as a collector
//! does; no collector binary can be installed here.

use crate::support;
use crate::support::registry_bin;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use prost::Message;
use support::{sha256_digest, PASSWORD, USER};

/// One span as the collector received it.
#[derive(Debug, Clone)]
struct Got {
    service: String,
    name: String,
    kind: i32,
    trace_id: String,
    span_id: String,
    parent: String,
    error: bool,
    attrs: HashMap<String, String>,
}

const SERVER: i32 = 2;
const CLIENT: i32 = 3;

fn text_of(kv: &KeyValue) -> String {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// An OTLP/HTTP traces endpoint: what it received, and how many exports.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Got>>>,
    exports: Arc<Mutex<usize>>,
}

impl Collector {
    async fn start() -> (Collector, SocketAddr) {
        let me = Collector::default();
        let state = me.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            post(move |body: Bytes| {
                let state = state.clone();
                async move {
                    let req = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                    *state.exports.lock().unwrap() += 1;
                    let mut spans = state.spans.lock().unwrap();
                    for rs in req.resource_spans {
                        let service = rs
                            .resource
                            .iter()
                            .flat_map(|r| &r.attributes)
                            .find(|kv| kv.key == "service.name")
                            .map(text_of)
                            .unwrap_or_default();
                        for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                            spans.push(Got {
                                service: service.clone(),
                                name: span.name.clone(),
                                kind: span.kind,
                                trace_id: hex::encode(&span.trace_id),
                                span_id: hex::encode(&span.span_id),
                                parent: hex::encode(&span.parent_span_id),
                                error: span.status.is_some_and(|s| s.code == 2),
                                attrs: span
                                    .attributes
                                    .iter()
                                    .map(|kv| (kv.key.clone(), text_of(kv)))
                                    .collect(),
                            });
                        }
                    }
                    // An empty ExportTraceServiceResponse.
                    (
                        [("content-type", "application/x-protobuf")],
                        Vec::<u8>::new(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (me, addr)
    }

    fn spans(&self) -> Vec<Got> {
        self.spans.lock().unwrap().clone()
    }

    /// Waits until a span `matching` has arrived (the exporter sends in
    /// batches, on its own schedule).
    async fn wait_for(&self, what: &str, matching: impl Fn(&Got) -> bool) -> Got {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(g) = self.spans().into_iter().find(|g| matching(g)) {
                return g;
            }
            assert!(
                Instant::now() < deadline,
                "no span {what} arrived; got {:#?}",
                self.spans()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn registry_with(dir: &Path, env: &[(&str, String)]) -> registry_bin::Served {
    let mut cmd = registry_bin::command(&dir.join("data"), &support::write_htpasswd(dir), &[]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    registry_bin::serve(cmd)
}

async fn push_blob(addr: &str, name: &str, data: &[u8]) -> String {
    let digest = sha256_digest(data);
    let r = reqwest::Client::new()
        .post(format!(
            "http://{addr}/v2/{name}/blobs/uploads/?digest={digest}"
        ))
        .basic_auth(USER, Some(PASSWORD))
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    digest
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn requests_are_server_spans_with_storage_spans_beneath_in_the_callers_trace() {
    let dir = tempfile::tempdir().unwrap();
    let (collector, at) = Collector::start().await;
    let registry = registry_with(
        dir.path(),
        &[
            ("OTEL_TRACES_EXPORTER", "otlp".into()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{at}")),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        ],
    );
    let addr = &registry.addr;
    let digest = push_blob(addr, "team/traced", b"a layer").await;
    let r = reqwest::Client::new()
        .get(format!("http://{addr}/v2/team/traced/blobs/{digest}"))
        .basic_auth(USER, Some(PASSWORD))
        .header("traceparent", format!("00-{TRACE}-{CALLER}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), &b"a layer"[..]);

    // The pull: one server span, a child of the caller's span.
    let pull = collector
        .wait_for("GET of the blob", |g| {
            g.trace_id == TRACE && g.name == "GET /v2/{name}/blobs/{digest}"
        })
        .await;
    assert_eq!(pull.parent, CALLER, "{pull:#?}");
    assert_eq!(pull.kind, SERVER);
    assert_eq!(pull.service, "registry");
    assert!(!pull.error);
    for (key, value) in [
        ("http.request.method", "GET"),
        ("http.route", "/v2/{name}/blobs/{digest}"),
        ("http.response.status_code", "200"),
        ("repository", "team/traced"),
        ("enduser.id", USER),
    ] {
        assert_eq!(
            pull.attrs.get(key).map(String::as_str),
            Some(value),
            "{key} of {pull:#?}"
        );
    }
    // Beneath it, the storage reads that served it.
    let read = collector
        .wait_for("of a storage read beneath the pull", |g| {
            g.parent == pull.span_id && g.name.starts_with("storage ")
        })
        .await;
    assert_eq!(read.trace_id, TRACE);
    assert_eq!(read.kind, CLIENT);
    assert!(
        read.attrs["storage.object"].contains(digest.trim_start_matches("sha256:")),
        "{read:#?}"
    );

    // The push carried no traceparent: a trace of its own, with its
    // storage writes beneath.
    let push = collector
        .wait_for("of the push", |g| {
            g.name == "POST /v2/{name}/blobs/uploads/"
        })
        .await;
    assert_eq!(push.parent, "", "{push:#?}");
    assert_ne!(push.trace_id, TRACE);
    assert_eq!(push.attrs["http.response.status_code"], "201");
    collector
        .wait_for("of a storage write beneath the push", |g| {
            g.parent == push.span_id && g.name == "storage put"
        })
        .await;
}

/// Spans still waiting for their batch when the registry is stopped are
/// sent before it exits. (Multi-threaded: the collector must answer while
/// the test waits for the exit.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_in_the_batch_at_sigterm_are_sent_before_exit() {
    let dir = tempfile::tempdir().unwrap();
    let (collector, at) = Collector::start().await;
    let mut registry = registry_with(
        dir.path(),
        &[
            ("OTEL_TRACES_EXPORTER", "otlp".into()),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                format!("http://{at}/v1/traces"),
            ),
            ("OTEL_SERVICE_NAME", "edge-registry".into()),
            // Ten minutes: nothing is sent before the shutdown.
            ("OTEL_BSP_SCHEDULE_DELAY", "600000".into()),
        ],
    );
    let r = reqwest::Client::new()
        .get(format!("http://{}/v2/", registry.addr))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(collector.spans().is_empty());
    registry.sigterm();
    let status = registry
        .wait_exit(Duration::from_secs(20))
        .expect("exits after SIGTERM");
    assert!(status.success(), "{status}");
    let spans = collector.spans();
    let base = spans
        .iter()
        .find(|g| g.name == "GET /v2/")
        .unwrap_or_else(|| panic!("GET /v2/ was not flushed: {spans:#?}"));
    assert_eq!(base.service, "edge-registry");
    assert_eq!(base.attrs["http.response.status_code"], "200");
}

/// Without OTEL_TRACES_EXPORTER=otlp nothing is sent, even with an
/// endpoint set (as registry:3: tracing is opt-in).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_unless_the_exporter_is_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let (collector, at) = Collector::start().await;
    let mut registry = registry_with(
        dir.path(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{at}")),
            ("OTEL_BSP_SCHEDULE_DELAY", "10".into()),
        ],
    );
    push_blob(&registry.addr, "quiet", b"x").await;
    registry.sigterm();
    assert!(registry
        .wait_exit(Duration::from_secs(20))
        .expect("exits")
        .success());
    assert_eq!(*collector.exports.lock().unwrap(), 0);
}

#[test]
fn an_exporter_or_protocol_it_lacks_fails_the_start_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    for (env, named) in [
        (
            [
                ("OTEL_TRACES_EXPORTER", "otlp"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ],
            "OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
        ),
        (
            [
                ("OTEL_TRACES_EXPORTER", "zipkin"),
                ("OTEL_SDK_DISABLED", "false"),
            ],
            "OTEL_TRACES_EXPORTER=zipkin",
        ),
    ] {
        let mut cmd = registry_bin::command(
            &dir.path().join("data"),
            &support::write_htpasswd(dir.path()),
            &["serve"],
        );
        cmd.envs(env);
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{named}: started anyway");
        assert!(stderr.contains(named), "{named}: {stderr}");
    }
}
