//! Whole-store jobs beside the storage model: garbage collection and
//! upload purging (`gc`), re-hashing and link checks (`scrub`), the
//! referrers index of manifests stored by registry:2
//! (`referrers_index`), and deleting a whole repository
//! (`repository_delete`). They use `object_store` through `Storage` only,
//! so they work on every backend.

pub mod gc;
pub mod referrers_index;
pub mod repository_delete;
pub mod scrub;
