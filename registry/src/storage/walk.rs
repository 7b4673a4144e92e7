//! Whole-store listings for maintenance (garbage collection, scrub, upload
//! purging): every key under `repositories/` classified by what it is, and
//! every blob. The inverse of `layout`: key → logical thing. Everything
//! goes through `object_store` listings, so it works on every backend.

use std::time::SystemTime;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt};

use super::{is_not_found, layout, Result, Storage};
use crate::oci::{Digest, RepoName};

/// What a key under `repositories/<name>/` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoKey {
    /// `_layers/<alg>/<hex>/link`: the blob (or manifest) is in the repository.
    Layer(Digest),
    /// `_manifests/revisions/<alg>/<hex>/link`: the manifest is in the repository.
    Revision(Digest),
    /// `_manifests/tags/<tag>/current/link`.
    TagCurrent(String),
    /// `_manifests/tags/<tag>/index/<alg>/<hex>/link`: tag history.
    TagIndex(String, Digest),
    /// `_referrers/<alg>/<subject>/<alg>/<referrer>/link`.
    Referrer { subject: Digest, referrer: Digest },
    /// Anything under `_uploads/<id>/`; `startedat` tells when it began.
    Upload { id: String, startedat: bool },
    /// A key this registry does not write (left alone).
    Other,
}

#[derive(Debug, Clone)]
pub struct RepoObject {
    pub repo: RepoName,
    pub kind: RepoKey,
    pub key: Path,
    pub size: u64,
    pub modified: SystemTime,
}

#[derive(Debug, Clone)]
pub struct BlobObject {
    pub digest: Digest,
    pub key: Path,
    pub size: u64,
    pub modified: SystemTime,
}

/// Every object under `repositories/`, and the keys in what looks like a
/// repository whose name this registry cannot parse (registry:2 accepts the
/// same names, so normally none; garbage collection refuses to run past
/// them, since it cannot tell what they reference).
#[derive(Debug, Default)]
pub struct RepoListing {
    pub objects: Vec<RepoObject>,
    pub unnamed: Vec<Path>,
}

/// Every blob, and the keys under `blobs/` that name none (left alone).
#[derive(Debug, Default)]
pub struct BlobListing {
    pub blobs: Vec<BlobObject>,
    pub strays: Vec<Path>,
}

fn digest_from(alg: &str, hex: &str) -> Option<Digest> {
    format!("{alg}:{hex}").parse().ok()
}

/// Classifies a key relative to `repositories/`: the repository name is
/// every component before the first one that starts with `_` (name
/// components never do).
pub fn classify_repository_key(relative: &[&str]) -> Option<(RepoName, RepoKey)> {
    let split = relative.iter().position(|p| p.starts_with('_'))?;
    let repo: RepoName = relative[..split].join("/").parse().ok()?;
    let kind = match &relative[split..] {
        ["_layers", alg, hex, "link"] => digest_from(alg, hex).map(RepoKey::Layer),
        ["_manifests", "revisions", alg, hex, "link"] => {
            digest_from(alg, hex).map(RepoKey::Revision)
        }
        ["_manifests", "tags", tag, "current", "link"] => {
            Some(RepoKey::TagCurrent(tag.to_string()))
        }
        ["_manifests", "tags", tag, "index", alg, hex, "link"] => {
            digest_from(alg, hex).map(|d| RepoKey::TagIndex(tag.to_string(), d))
        }
        ["_referrers", salg, shex, ralg, rhex, "link"] => {
            match (digest_from(salg, shex), digest_from(ralg, rhex)) {
                (Some(subject), Some(referrer)) => Some(RepoKey::Referrer { subject, referrer }),
                _ => None,
            }
        }
        ["_uploads", id, rest @ ..] if !rest.is_empty() => Some(RepoKey::Upload {
            id: id.to_string(),
            startedat: rest == ["startedat"],
        }),
        _ => None,
    };
    Some((repo, kind.unwrap_or(RepoKey::Other)))
}

/// Parses `blobs/<alg>/<hex[0:2]>/<hex>/data` relative to `blobs/`.
pub fn classify_blob_key(relative: &[&str]) -> Option<Digest> {
    match relative {
        [alg, prefix, hex, "data"] if hex.starts_with(prefix) && prefix.len() == 2 => {
            digest_from(alg, hex)
        }
        _ => None,
    }
}

impl Storage {
    /// A whole listing. A key that vanishes while the listing runs (an
    /// upload finishing, a tag being deleted) can surface as "not found"
    /// from the middle of the stream; that listing is incomplete and is
    /// taken again rather than read as empty (a collector trusting it would
    /// see no repository at all). Not found every time: the prefix is not
    /// there, and the listing is empty.
    pub(crate) async fn list_all(&self, prefix: &Path) -> Result<Vec<ObjectMeta>> {
        let mut attempts = 0;
        loop {
            match self.store.list(Some(prefix)).try_collect().await {
                Ok(m) => return Ok(m),
                Err(e) if is_not_found(&e) && attempts < 5 => {
                    attempts += 1;
                    tracing::warn!(prefix = %prefix, error = %e, attempts, "listing changed while it ran; listing again");
                }
                // Still not found: the prefix itself is not there.
                Err(e) if is_not_found(&e) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Every object under `repositories/`, classified (one recursive
    /// listing; keys outside any repository are skipped).
    pub async fn walk_repositories(&self) -> Result<RepoListing> {
        self.walk_under(&layout::repositories_root()).await
    }

    /// Every repository object under `prefix` (a key under
    /// `repositories/`), classified.
    pub async fn classified_under(&self, prefix: &Path) -> Result<Vec<RepoObject>> {
        Ok(self.walk_under(prefix).await?.objects)
    }

    async fn walk_under(&self, prefix: &Path) -> Result<RepoListing> {
        let depth = layout::repositories_root().parts().count();
        let mut out = RepoListing::default();
        for m in self.list_all(prefix).await? {
            let parts: Vec<_> = m.location.parts().skip(depth).collect();
            let relative: Vec<&str> = parts.iter().map(|p| p.as_ref()).collect();
            match classify_repository_key(&relative) {
                Some((repo, kind)) => out.objects.push(RepoObject {
                    repo,
                    kind,
                    size: m.size,
                    modified: SystemTime::from(m.last_modified),
                    key: m.location,
                }),
                None if relative.iter().any(|p| p.starts_with('_')) => out.unnamed.push(m.location),
                None => {}
            }
        }
        Ok(out)
    }

    /// Every blob under `blobs/`.
    pub async fn walk_blobs(&self) -> Result<BlobListing> {
        let root = layout::blobs_root();
        let depth = root.parts().count();
        let mut out = BlobListing::default();
        for m in self.list_all(&root).await? {
            let parts: Vec<_> = m.location.parts().skip(depth).collect();
            let relative: Vec<&str> = parts.iter().map(|p| p.as_ref()).collect();
            match classify_blob_key(&relative) {
                Some(digest) => out.blobs.push(BlobObject {
                    digest,
                    size: m.size,
                    modified: SystemTime::from(m.last_modified),
                    key: m.location,
                }),
                None => out.strays.push(m.location),
            }
        }
        Ok(out)
    }

    /// The digest a link object holds; None when it is gone.
    pub async fn read_link_key(&self, key: &Path) -> Result<Option<Digest>> {
        self.read_link(key).await
    }

    /// The whole content of a blob, if stored (for manifests, which are
    /// small; blob layers are streamed with `blob_stream`).
    pub async fn read_blob(&self, d: &Digest) -> Result<Option<Bytes>> {
        match self.store.get(&layout::blob_data(d)).await {
            Ok(r) => Ok(Some(r.bytes().await?)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// A blob's content as a stream of parts, if stored.
    pub async fn blob_stream(
        &self,
        d: &Digest,
    ) -> Result<Option<BoxStream<'static, Result<Bytes, object_store::Error>>>> {
        match self.store.get(&layout::blob_data(d)).await {
            Ok(r) => Ok(Some(r.into_stream())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the given keys (a missing key is not an error); returns how
    /// many were deleted.
    pub async fn delete_keys(&self, keys: Vec<Path>) -> Result<usize> {
        let stream = futures::stream::iter(keys.into_iter().map(Ok)).boxed();
        let mut deleted = self.store.delete_stream(stream);
        let mut n = 0;
        let mut result = Ok(());
        while let Some(r) = deleted.next().await {
            match r {
                Ok(key) => {
                    self.meta.invalidate(&key);
                    n += 1
                }
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    result = Err(e.into());
                    break;
                }
            }
        }
        if result.is_err() {
            // What failed may be half gone: forget everything.
            self.meta.clear();
        }
        result.map(|()| n)
    }

    /// When an upload session began, from its `startedat` object (RFC 3339,
    /// which registry:2 writes too); None when missing or unreadable.
    pub async fn read_started_at(&self, key: &Path) -> Result<Option<SystemTime>> {
        let bytes = match self.store.get(key).await {
            Ok(r) => r.bytes().await?,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let text = String::from_utf8_lossy(&bytes);
        Ok(humantime::parse_rfc3339_weak(text.trim()).ok())
    }

    /// Deletes everything under `prefix`.
    pub async fn delete_tree(&self, prefix: &Path) -> Result<()> {
        self.delete_prefix(prefix).await?;
        self.remove_empty_dirs(prefix).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn d() -> Digest {
        format!("sha256:{HEX}").parse().unwrap()
    }

    fn classify(key: &str) -> Option<(String, RepoKey)> {
        let parts: Vec<&str> = key.split('/').collect();
        classify_repository_key(&parts).map(|(r, k)| (r.to_string(), k))
    }

    #[test]
    fn classifies_every_kind_of_repository_key() {
        assert_eq!(
            classify(&format!("team/app/_layers/sha256/{HEX}/link")),
            Some(("team/app".into(), RepoKey::Layer(d())))
        );
        assert_eq!(
            classify(&format!("a/_manifests/revisions/sha256/{HEX}/link")),
            Some(("a".into(), RepoKey::Revision(d())))
        );
        assert_eq!(
            classify("a/b/_manifests/tags/v1.0/current/link"),
            Some(("a/b".into(), RepoKey::TagCurrent("v1.0".into())))
        );
        assert_eq!(
            classify(&format!("a/_manifests/tags/v1/index/sha256/{HEX}/link")),
            Some(("a".into(), RepoKey::TagIndex("v1".into(), d())))
        );
        assert_eq!(
            classify(&format!("a/_referrers/sha256/{HEX}/sha256/{HEX}/link")),
            Some((
                "a".into(),
                RepoKey::Referrer {
                    subject: d(),
                    referrer: d()
                }
            ))
        );
        assert_eq!(
            classify("a/_uploads/1234/startedat"),
            Some((
                "a".into(),
                RepoKey::Upload {
                    id: "1234".into(),
                    startedat: true
                }
            ))
        );
        assert_eq!(
            classify("a/_uploads/1234/parts/0001"),
            Some((
                "a".into(),
                RepoKey::Upload {
                    id: "1234".into(),
                    startedat: false
                }
            ))
        );
        assert_eq!(
            classify("a/_layers/sha256/nothex/link"),
            Some(("a".into(), RepoKey::Other))
        );
        assert_eq!(classify("a/b/c"), None, "no _ component: no repository");
        assert_eq!(classify("_layers/x"), None, "empty name");
    }

    #[test]
    fn classifies_blob_keys() {
        let parts = ["sha256", &HEX[..2], HEX, "data"];
        assert_eq!(classify_blob_key(&parts), Some(d()));
        assert_eq!(classify_blob_key(&["sha256", "ff", HEX, "data"]), None);
        assert_eq!(classify_blob_key(&["sha256", &HEX[..2], HEX]), None);
    }
}
