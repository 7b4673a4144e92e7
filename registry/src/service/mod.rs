//! The domain layer: what every entrance (the `/v2` handlers, the web UI,
//! `/v2/_ext/`, the pull-through cache, background jobs) asks of the
//! registry, decided once. Its refusals are the spec's errors
//! (`protocol::error::ApiError`), which every entrance shows its own way.

pub mod events;
pub mod listing;
pub mod manifests;
pub mod proxied;
pub mod repositories;

use crate::protocol::error::{ApiError, Code};
use crate::storage::StorageError;

/// Storage failures as the spec's errors: every entrance maps them the
/// same way (a backend failure is a 503 with a request id; the cause is
/// logged, not sent).
impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            // A backend's error names its endpoint, bucket and its own
            // XML: for the log only.
            StorageError::Backend(e) => {
                ApiError::internal(Code::Unavailable, "storage is unavailable", e)
            }
            other => ApiError::internal(Code::Unknown, "internal storage error", other),
        }
    }
}
