//! One repository's keys, for deleting the repository
//! (`crate::storage::maintenance::repository_delete`): a listing of `repositories/<name>/`
//! classified as the whole-store walk classifies, without the keys of
//! repositories nested under the name (`team/app/sub`).

use std::time::SystemTime;

use futures::TryStreamExt;
use object_store::ObjectStoreExt;

use super::walk::{classify_repository_key, RepoObject};
use super::{is_not_found, layout, Result, Storage};
use crate::oci::{Digest, RepoName, Tag};

impl Storage {
    /// Every object of `name` (not of repositories nested under it).
    pub async fn repository_objects(&self, name: &RepoName) -> Result<Vec<RepoObject>> {
        let depth = layout::repositories_root().parts().count();
        let prefix = layout::repository(name);
        let mut attempts = 0;
        let metas: Vec<_> = loop {
            match self.store.list(Some(&prefix)).try_collect().await {
                Ok(m) => break m,
                // A key vanished mid-listing (an upload finishing): again.
                Err(e) if is_not_found(&e) && attempts < 5 => attempts += 1,
                Err(e) if is_not_found(&e) => break Vec::new(),
                Err(e) => return Err(e.into()),
            }
        };
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let parts: Vec<_> = m.location.parts().skip(depth).collect();
                let relative: Vec<&str> = parts.iter().map(|p| p.as_ref()).collect();
                let (repo, kind) = classify_repository_key(&relative)?;
                (&repo == name).then(|| RepoObject {
                    repo,
                    kind,
                    size: m.size,
                    modified: SystemTime::from(m.last_modified),
                    key: m.location,
                })
            })
            .collect())
    }

    /// On local disk, the directories a deleted repository leaves empty
    /// (so the catalog, which lists directories, no longer names it).
    pub async fn remove_repository_dirs(&self, name: &RepoName) {
        self.remove_empty_dirs(&layout::repository(name)).await
    }
}

impl Storage {
    /// Announces that `name` is being deleted (under the collector lock):
    /// manifest pushes into it fail from now on (`gc_pending_among`).
    pub async fn mark_repository_deleting(&self, name: &RepoName) -> Result<()> {
        self.store
            .put(
                &layout::gc_pending_repository(name),
                object_store::PutPayload::from_static(b"1"),
            )
            .await?;
        Ok(())
    }

    /// Checked by a manifest push after its tag is written: false when a
    /// repository delete is running or has removed the manifest since the
    /// push's first check. A push that passes was either complete before
    /// the delete listed the repository (and is deleted with it), or comes
    /// after the delete finished.
    pub async fn manifest_still_stands(&self, name: &RepoName, d: &Digest) -> Result<bool> {
        if self.exists(&layout::gc_lock()).await?
            && self.exists(&layout::gc_pending_repository(name)).await?
        {
            return Ok(false);
        }
        // Straight from storage, never a cache: another replica may have
        // deleted it.
        self.exists(&layout::revision_link(name, d)).await
    }

    /// Takes back a tag a refused push wrote, if it still names `d`.
    pub async fn untag_if(&self, name: &RepoName, tag: &Tag, d: &Digest) -> Result<()> {
        if self.resolve_tag(name, tag).await?.as_ref() == Some(d) {
            self.delete_if_exists(&layout::tag_current_link(name, tag))
                .await?;
        }
        Ok(())
    }
}
