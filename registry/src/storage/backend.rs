//! Builds the `object_store` backend the configuration names.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::chunked::ChunkedStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use super::aligned::PartSizes;
use super::direct_io::{self, DirectIo};
use super::durability::SessionsUnsynced;
use super::{Redirect, Storage};
use crate::config::{self, StorageBackend};

/// Reads of local files come in pieces of this size when O_DIRECT is off;
/// object_store's default (8 KiB) caps blob GETs far below the disk's speed.
const LOCAL_READ_CHUNK: usize = 256 * 1024;
/// Parts written to local files; small, since memory per upload is bounded by
/// a few of these, and a multiple of the O_DIRECT alignment.
const LOCAL_PART_SIZE: usize = 1024 * 1024;
/// S3 takes at most this many parts per multipart upload; parts grow as an
/// upload goes on so that `chunksize` bounds memory without bounding blob
/// size.
const S3_MAX_PARTS: usize = 10_000;
/// The largest object one CopyObject copies (object_store renames by copy).
const S3_COPY_LIMIT: u64 = 5 << 30;
/// How long a pre-signed blob URL stays valid.
const REDIRECT_TTL: Duration = Duration::from_secs(20 * 60);

#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct BackendError {
    key: &'static str,
    message: String,
}

pub fn open(config: &config::Storage) -> Result<Storage, BackendError> {
    match config.backend {
        StorageBackend::Filesystem => open_filesystem(config),
        StorageBackend::S3 => open_s3(&config.s3),
    }
}

fn open_filesystem(config: &config::Storage) -> Result<Storage, BackendError> {
    let root = &config.filesystem.rootdirectory;
    let err = |message: String| BackendError {
        key: "storage.filesystem.rootdirectory",
        message: format!("{}: {message}", root.display()),
    };
    std::fs::create_dir_all(root).map_err(|e| err(e.to_string()))?;
    let local = LocalFileSystem::new_with_prefix(root)
        .map_err(|e| err(e.to_string()))?
        // Deleting a tag's files must also drop its directory, or tag and
        // catalog listings (which list directories) would still show it.
        .with_automatic_cleanup(true)
        .with_fsync(config.filesystem.fsync);
    let local = Arc::new(local);
    let direct = config.filesystem.directio && direct_io::supported(root);
    let mut store: Arc<dyn ObjectStore> = if direct {
        Arc::new(DirectIo::new(local, config.filesystem.fsync))
    } else {
        if config.filesystem.directio {
            tracing::info!(root = %root.display(), "the filesystem refuses O_DIRECT; blob data goes through the page cache");
        }
        Arc::new(ChunkedStore::new(local, LOCAL_READ_CHUNK))
    };
    if config.filesystem.fsync {
        let sessions = LocalFileSystem::new_with_prefix(root)
            .map_err(|e| err(e.to_string()))?
            .with_automatic_cleanup(true);
        store = Arc::new(SessionsUnsynced {
            durable: store,
            sessions: Arc::new(sessions),
        });
    }
    let root = std::fs::canonicalize(root).map_err(|e| err(e.to_string()))?;
    Ok(
        Storage::new(store, PartSizes::fixed(LOCAL_PART_SIZE)).with_local_disk(
            root,
            direct,
            config.filesystem.fsync,
        ),
    )
}

fn open_s3(config: &config::S3) -> Result<Storage, BackendError> {
    // reqwest is built without a bundled crypto provider; use ring, as the
    // TLS listener does.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(&config.bucket)
        .with_region(&config.region)
        .with_virtual_hosted_style_request(!config.forcepathstyle)
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        .with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: config.max_retries,
            retry_timeout: Duration::from_secs(config.retry_timeout_secs),
        })
        .with_client_options(ClientOptions::new().with_timeout(Duration::from_secs(300)));
    if let Some(endpoint) = &config.regionendpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"));
    }
    if let Some(key) = &config.accesskey {
        builder = builder.with_access_key_id(key);
    }
    if let Some(secret) = &config.secretkey {
        builder = builder.with_secret_access_key(secret);
    }
    let s3 = Arc::new(builder.build().map_err(|e| BackendError {
        key: "storage.s3",
        message: e.to_string(),
    })?);
    let prefix = config.rootdirectory.trim_matches('/');
    let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
        s3.clone()
    } else {
        Arc::new(PrefixStore::new(s3.clone(), prefix))
    };
    let mut storage = Storage::new(store, PartSizes::growing(config.chunksize, S3_MAX_PARTS))
        .with_rename_limit(S3_COPY_LIMIT)
        .with_read_coalescing()
        .map_err(|e| BackendError {
            key: "storage.s3",
            message: format!(
                "read spool directory in {}: {e}",
                std::env::temp_dir().display()
            ),
        })?;
    if config.redirect {
        storage = storage.with_redirect(Redirect {
            signer: s3,
            prefix: Path::from(prefix),
            ttl: REDIRECT_TTL,
        });
    }
    Ok(storage)
}
