//! The storage key layout: one table from logical thing to key, the same as
//! CNCF Distribution's (`registry/storage/paths.go`), so a directory or bucket
//! written by registry:2 is served as is and the other way round.
//!
//! ```text
//! docker/registry/v2/
//!   blobs/<alg>/<hex[0:2]>/<hex>/data                       blob content
//!   repositories/<name>/
//!     _layers/<alg>/<hex>/link                               blob is in repo
//!     _manifests/revisions/<alg>/<hex>/link                  manifest is in repo
//!     _manifests/tags/<tag>/current/link                     tag -> manifest
//!     _manifests/tags/<tag>/index/<alg>/<hex>/link           tag history
//!     _uploads/<id>/startedat                                upload session exists
//!     _uploads/<id>/parts/<end:020>                          (ours) chunk record
//!     _uploads/<id>/chunks/<start:020>-<nonce>               (ours) chunk data
//!     _uploads/<id>/claims/<offset:020>                      (ours) who writes on at offset (storage/chunk_files.rs)
//!     _referrers/<alg>/<subject hex>/<alg>/<hex>/link        (ours) subject -> referrer
//!   _gc/lock                                                 (ours) a garbage collection runs
//!   _gc/pending/blobs/<alg>/<hex>                            (ours) GC is about to remove this blob
//!   _gc/pending/repositories/<name>/<alg>/<hex>              (ours) ... or this repository's links to it
//!   _pulls/<name>/_pulls.json                                (ours) tags' last pulls (storage/pull_record.rs)
//!   _quota/<scope>/{_blobs,_used,_ready}                     (ours) quota claims and counters (storage/quota_ledger.rs)
//!   _notifications/<endpoint>/<sortable name>                (ours) events to deliver (storage/event_queue.rs)
//! ```
//!
//! A link file holds the digest string (`sha256:...`) and nothing else.
//! Keys under `_uploads` and `_referrers` beyond `startedat` are this
//! registry's own; registry:2 ignores them.

use object_store::path::Path;

use crate::oci::{Digest, RepoName, Tag};

const ROOT: &str = "docker/registry/v2";

fn key(s: String) -> Path {
    // Every component was validated (names, tags, digests, upload ids), so the
    // raw form is safe and matches the on-disk names registry:2 uses. Parsed
    // (checked as it is) rather than built part by part with percent-encoding:
    // the same path for these characters at a fraction of the cost, and keys
    // are built on every request (a third of a cached manifest GET's
    // instructions went to `Path::from`, bench/profile.sh).
    Path::parse(&s).unwrap_or_else(|_| Path::from(s))
}

pub fn blob_data(d: &Digest) -> Path {
    key(blob_data_raw(d))
}

/// A key as text: what the metadata cache is keyed by, so that a cache hit
/// builds no `Path` ([`path`] makes it one on a miss).
pub fn blob_data_raw(d: &Digest) -> String {
    format!(
        "{ROOT}/blobs/{}/{}/{}/data",
        d.algorithm().as_str(),
        &d.hex()[..2],
        d.hex()
    )
}

/// The key a `*_raw` function named.
pub fn path(raw: String) -> Path {
    key(raw)
}

pub fn repositories_root() -> Path {
    key(format!("{ROOT}/repositories"))
}

pub fn repository(name: &RepoName) -> Path {
    key(format!("{ROOT}/repositories/{name}"))
}

pub fn layer_link(name: &RepoName, d: &Digest) -> Path {
    key(layer_link_raw(name, d))
}

pub fn layer_link_raw(name: &RepoName, d: &Digest) -> String {
    format!(
        "{ROOT}/repositories/{name}/_layers/{}/{}/link",
        d.algorithm().as_str(),
        d.hex()
    )
}

pub fn manifests_dir(name: &RepoName) -> Path {
    key(format!("{ROOT}/repositories/{name}/_manifests"))
}

pub fn revision_link(name: &RepoName, d: &Digest) -> Path {
    key(revision_link_raw(name, d))
}

pub fn revision_link_raw(name: &RepoName, d: &Digest) -> String {
    format!(
        "{ROOT}/repositories/{name}/_manifests/revisions/{}/{}/link",
        d.algorithm().as_str(),
        d.hex()
    )
}

pub fn tags_dir(name: &RepoName) -> Path {
    key(format!("{ROOT}/repositories/{name}/_manifests/tags"))
}

pub fn tag_dir(name: &RepoName, tag: &Tag) -> Path {
    key(format!("{ROOT}/repositories/{name}/_manifests/tags/{tag}"))
}

pub fn tag_current_link(name: &RepoName, tag: &Tag) -> Path {
    key(tag_current_link_raw(name, tag))
}

pub fn tag_current_link_raw(name: &RepoName, tag: &Tag) -> String {
    format!("{ROOT}/repositories/{name}/_manifests/tags/{tag}/current/link")
}

pub fn tag_index_link(name: &RepoName, tag: &Tag, d: &Digest) -> Path {
    key(format!(
        "{ROOT}/repositories/{name}/_manifests/tags/{tag}/index/{}/{}/link",
        d.algorithm().as_str(),
        d.hex()
    ))
}

/// Whether `key` lies inside an upload session (`.../_uploads/<id>/...`):
/// bookkeeping no client is told exists, which `durability` writes without
/// fsync.
pub fn is_session_key(key: &Path) -> bool {
    let mut parts = key.parts();
    parts.any(|p| p.as_ref() == "_uploads") && parts.next().is_some()
}

pub fn upload_dir(name: &RepoName, id: &str) -> Path {
    key(format!("{ROOT}/repositories/{name}/_uploads/{id}"))
}

pub fn upload_started_at(name: &RepoName, id: &str) -> Path {
    key(format!(
        "{ROOT}/repositories/{name}/_uploads/{id}/startedat"
    ))
}

pub fn upload_parts_dir(name: &RepoName, id: &str) -> Path {
    key(format!("{ROOT}/repositories/{name}/_uploads/{id}/parts"))
}

pub fn upload_part(name: &RepoName, id: &str, end: u64) -> Path {
    key(format!(
        "{ROOT}/repositories/{name}/_uploads/{id}/parts/{end:020}"
    ))
}

pub fn upload_chunk(name: &RepoName, id: &str, start: u64, nonce: &str) -> Path {
    key(format!(
        "{ROOT}/repositories/{name}/_uploads/{id}/chunks/{start:020}-{nonce}"
    ))
}

/// The claim of the one writer that may continue an upload's chunk file
/// at `offset` (`chunk_files`).
pub fn upload_claim(name: &RepoName, id: &str, offset: u64) -> Path {
    key(format!(
        "{ROOT}/repositories/{name}/_uploads/{id}/claims/{offset:020}"
    ))
}

pub fn referrers_dir(name: &RepoName, subject: &Digest) -> Path {
    key(format!(
        "{ROOT}/repositories/{name}/_referrers/{}/{}",
        subject.algorithm().as_str(),
        subject.hex()
    ))
}

pub fn referrer_link(name: &RepoName, subject: &Digest, referrer: &Digest) -> Path {
    key(format!(
        "{ROOT}/repositories/{name}/_referrers/{}/{}/{}/{}/link",
        subject.algorithm().as_str(),
        subject.hex(),
        referrer.algorithm().as_str(),
        referrer.hex()
    ))
}

pub fn blobs_root() -> Path {
    key(format!("{ROOT}/blobs"))
}

/// Held by the garbage collector while it runs (one run at a time across
/// processes and replicas).
pub fn gc_lock() -> Path {
    key(format!("{ROOT}/_gc/lock"))
}

pub fn gc_pending_dir() -> Path {
    key(format!("{ROOT}/_gc/pending"))
}

/// Written by the garbage collector before it removes blob `d`'s content; a
/// manifest push that references `d` and sees this fails instead of being
/// acknowledged with content about to vanish.
pub fn gc_pending_blob(d: &Digest) -> Path {
    key(format!(
        "{ROOT}/_gc/pending/blobs/{}/{}",
        d.algorithm().as_str(),
        d.hex()
    ))
}

/// Written while repository `name` is being deleted as a whole
/// (`crate::storage::maintenance::repository_delete`): a manifest push into it fails. The last
/// component starts with `_`, so no nested repository's marker is a prefix.
pub fn gc_pending_repository(name: &RepoName) -> Path {
    key(format!("{ROOT}/_gc/pending/deleting/{name}/_repository"))
}

/// Like `gc_pending_blob`, for removing `name`'s links to `d` (its
/// `_layers` link, or the revision link of an untagged manifest).
pub fn gc_pending_link(name: &RepoName, d: &Digest) -> Path {
    key(format!(
        "{ROOT}/_gc/pending/repositories/{name}/{}/{}",
        d.algorithm().as_str(),
        d.hex()
    ))
}

/// Parses the digest a `.../<alg>/<hex>/link` key names.
pub fn digest_of_link_key(path: &Path) -> Option<Digest> {
    let parts: Vec<_> = path.parts().collect();
    let n = parts.len();
    if n < 3 || parts[n - 1].as_ref() != "link" {
        return None;
    }
    format!("{}:{}", parts[n - 3].as_ref(), parts[n - 2].as_ref())
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {

    #[test]
    fn parsed_keys_are_the_keys_path_from_builds() {
        let name: RepoName = "team-a/app.v2/x_y".parse().unwrap();
        let tag: Tag = "V1.0_rc-2".parse().unwrap();
        let d: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            .parse()
            .unwrap();
        for k in [
            tag_current_link(&name, &tag),
            revision_link(&name, &d),
            layer_link(&name, &d),
            blob_data(&d),
        ] {
            assert_eq!(k, Path::from(k.as_ref().to_string()), "{k}");
        }
    }
    use super::*;

    #[test]
    fn matches_registry2_paths() {
        let d: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            .parse()
            .unwrap();
        let name: RepoName = "team/app".parse().unwrap();
        let tag: Tag = "latest".parse().unwrap();
        assert_eq!(
            blob_data(&d).as_ref(),
            "docker/registry/v2/blobs/sha256/e3/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/data"
        );
        assert_eq!(
            tag_current_link(&name, &tag).as_ref(),
            "docker/registry/v2/repositories/team/app/_manifests/tags/latest/current/link"
        );
        assert_eq!(
            digest_of_link_key(&revision_link(&name, &d)),
            Some(d.clone())
        );
        assert_eq!(digest_of_link_key(&layer_link(&name, &d)), Some(d));
    }
}
