//! OpenTelemetry traces over OTLP/HTTP, configured as every OpenTelemetry
//! SDK is: by the standard `OTEL_*` variables. Off unless
//! `OTEL_TRACES_EXPORTER=otlp`, as in registry:3, so a registry that never
//! asked for traces never tries to reach a collector.
//!
//! The spans themselves are ordinary `tracing` spans at debug level: one per
//! request (`api::trace`), one per storage operation beneath it
//! (`storage::metered`). The log output filters them out at its usual
//! levels, so when tracing is off they are never even built.

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing::Metadata;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

const TRACES_EXPORTER: &str = "OTEL_TRACES_EXPORTER";
const SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
const PROTOCOLS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
];

/// Why tracing cannot start as configured: the registry refuses to start
/// rather than run without the traces someone asked for.
#[derive(Debug, thiserror::Error)]
pub enum OtelError {
    #[error("{var}={value}: this registry exports traces with OTLP only; set {var}=otlp, or none to turn tracing off")]
    Exporter { var: &'static str, value: String },
    #[error("{var}={value}: this registry exports OTLP over HTTP with protobuf only; set {var}=http/protobuf and point the endpoint at the collector's OTLP/HTTP port (4318)")]
    Protocol { var: &'static str, value: String },
    #[error("OpenTelemetry exporter: {0}")]
    Build(String),
}

/// Whether traces are to be exported, from the variables `var` reads.
pub fn wanted(var: impl Fn(&str) -> Option<String>) -> Result<bool, OtelError> {
    if var(SDK_DISABLED).is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Ok(false);
    }
    let exporters = var(TRACES_EXPORTER).unwrap_or_default();
    let mut otlp = false;
    for e in exporters
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        match e {
            "otlp" => otlp = true,
            "none" => {}
            _ => {
                return Err(OtelError::Exporter {
                    var: TRACES_EXPORTER,
                    value: exporters.clone(),
                })
            }
        }
    }
    if !otlp {
        return Ok(false);
    }
    // The signal's own variable wins over the general one, as the SDK reads
    // them.
    if let Some((var_name, value)) = PROTOCOLS
        .iter()
        .find_map(|&name| var(name).map(|v| (name, v)))
    {
        if value.trim() != "http/protobuf" {
            return Err(OtelError::Protocol {
                var: var_name,
                value,
            });
        }
    }
    Ok(true)
}

/// The running exporter: spans are batched and sent from the SDK's own
/// thread (with a blocking HTTP client, so no request task ever waits on
/// the collector).
pub struct Tracing {
    provider: SdkTracerProvider,
}

impl Tracing {
    /// Starts exporting when the environment asks for it.
    pub fn from_env() -> Result<Option<Tracing>, OtelError> {
        if !wanted(|k| std::env::var(k).ok())? {
            return Ok(None);
        }
        // Endpoint, headers, timeout and compression come from the
        // OTEL_EXPORTER_OTLP_* variables, read by the exporter itself.
        let exporter = SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build()
            .map_err(|e| OtelError::Build(e.to_string()))?;
        let mut resource = Resource::builder().with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ));
        if !names_service(|k| std::env::var(k).ok()) {
            resource = resource.with_service_name("registry");
        }
        // Sampler (OTEL_TRACES_SAMPLER) and batching (OTEL_BSP_*) are read
        // from the environment by the SDK.
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        Ok(Some(Tracing { provider }))
    }

    pub fn tracer(&self) -> SdkTracer {
        self.provider.tracer("registry")
    }

    /// Sends what is still batched; called once the server has stopped.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("registry: OpenTelemetry exporter did not flush: {e}");
        }
    }
}

/// Whether the operator named the service (`OTEL_SERVICE_NAME` or a
/// `service.name` in `OTEL_RESOURCE_ATTRIBUTES`); otherwise it is "registry",
/// not the SDK's "unknown_service".
fn names_service(var: impl Fn(&str) -> Option<String>) -> bool {
    var("OTEL_SERVICE_NAME").is_some_and(|v| !v.is_empty())
        || var("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|attrs| {
            attrs
                .split(',')
                .any(|kv| kv.split('=').next().map(str::trim) == Some("service.name"))
        })
}

/// What the trace exporter receives: this crate's spans (requests and
/// storage operations) and, as span events, warnings and errors.
pub fn exported(meta: &Metadata<'_>) -> bool {
    if meta.is_span() {
        meta.target().starts_with("registry")
    } else {
        *meta.level() <= tracing::Level::WARN
    }
}

struct Headers<'a>(&'a axum::http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Continues the caller's trace: a W3C `traceparent` (and `tracestate`)
/// on the request makes `span` a child of the caller's span. A missing or
/// malformed header leaves `span` a root, as the spec says.
pub fn continue_trace(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    if !headers.contains_key("traceparent") {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&Headers(headers));
    // Fails only when the span is not recorded by the OpenTelemetry layer.
    let _ = span.set_parent(parent);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn off_unless_asked_for_and_refused_when_unsupported() {
        for (vars, want) in [
            (&[][..], Ok(false)),
            (&[(TRACES_EXPORTER, "none")][..], Ok(false)),
            (&[(TRACES_EXPORTER, "otlp")][..], Ok(true)),
            (&[(TRACES_EXPORTER, " otlp ,none")][..], Ok(true)),
            (
                &[(TRACES_EXPORTER, "otlp"), (SDK_DISABLED, "TRUE")][..],
                Ok(false),
            ),
            (
                &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")][..],
                Ok(false),
            ),
            (
                &[
                    (TRACES_EXPORTER, "otlp"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ][..],
                Ok(true),
            ),
            (
                &[(TRACES_EXPORTER, "zipkin")][..],
                Err("OTEL_TRACES_EXPORTER=zipkin"),
            ),
            (
                &[
                    (TRACES_EXPORTER, "otlp"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ][..],
                Err("OTEL_EXPORTER_OTLP_PROTOCOL=grpc"),
            ),
            (
                &[
                    (TRACES_EXPORTER, "otlp"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                    ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
                ][..],
                Err("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/json"),
            ),
            // A protocol for another tool does not matter while tracing is off.
            (&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")][..], Ok(false)),
        ] {
            let got = wanted(env(vars)).map_err(|e| e.to_string());
            match want {
                Ok(w) => assert_eq!(got, Ok(w), "{vars:?}"),
                Err(prefix) => assert!(
                    got.as_ref().is_err_and(|e| e.starts_with(prefix)),
                    "{vars:?}: {got:?}"
                ),
            }
        }
    }

    #[test]
    fn the_service_is_named_registry_unless_the_operator_names_it() {
        assert!(!names_service(env(&[])));
        assert!(names_service(env(&[("OTEL_SERVICE_NAME", "edge")])));
        assert!(names_service(env(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "team=infra, service.name=edge"
        )])));
        assert!(!names_service(env(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.namespace=infra"
        )])));
    }
}
