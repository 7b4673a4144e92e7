//! The OCI data model: digests, names and references, manifests. Pure
//! functions with no I/O, so every rule here is unit-tested in place.

pub mod digest;
pub mod manifest;
pub mod name;
pub mod references;

pub use digest::{Algorithm, Digest};
pub use name::{Reference, RepoName, Tag};
