//! Every integration test of counter-app in one test binary (one link of
//! the dependency graph instead of three): the service against a real
//! redis-server (`service`), its image (`image`) and the deploy pipeline on
//! Docker and Swarm (`deploy`); `support` holds what they share, and the
//! registry's image test borrows its Docker helpers.

mod support;

mod deploy;
mod image;
mod service;
