//! Every integration test of the registry in one test binary: one link of
//! the dependency graph instead of one per file (on two cores, linking 40
//! binaries was most of a cold CI run). Each module is a suite; `support`
//! holds what they share (docs/architecture.md, "Tests").

mod support;

mod acl_basic;
mod auth_basic;
mod auth_token;
mod bad_input;
mod binary;
mod conformance_discovery;
mod conformance_management;
mod conformance_pull;
mod conformance_push;
mod crash;
mod distribution_config;
mod docker_cli;
mod gc;
mod gc_s3;
mod hardening;
mod image;
mod layers;
mod layout_compat;
mod listing;
mod login_storm;
mod metadata_cache;
mod metrics;
mod notifications;
mod policies_delete;
mod policies_immutable;
mod policies_quota;
mod policies_reload;
mod policies_retention;
mod proxy;
mod readonly;
mod s3;
mod scrub;
mod shutdown;
mod skopeo;
mod slow_clients;
mod smoke;
mod tls;
mod token_challenges;
mod token_jwks;
mod tracing_otlp;
mod ui_bench;
mod ui_browser;
mod ui_http;
