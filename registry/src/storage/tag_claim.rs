//! Pointing an immutable tag at a manifest: its `current/link` is created
//! only if absent (`PutMode::Create`, conditional on S3 too), so of two
//! pushes racing to give a new immutable tag different digests exactly one
//! wins and the other learns which digest did.

use object_store::{PutMode, PutPayload};

use super::{layout, Result, Storage};
use crate::oci::{Digest, RepoName, Tag};

impl Storage {
    /// Tags `d` unless `tag` already names another digest, which is
    /// returned. The manifest must be stored already (as for any tag).
    pub async fn claim_tag(
        &self,
        name: &RepoName,
        tag: &Tag,
        d: &Digest,
    ) -> Result<Result<(), Digest>> {
        for _ in 0..3 {
            if let Some(current) = self.resolve_tag(name, tag).await? {
                return Ok(if &current == d { Ok(()) } else { Err(current) });
            }
            self.write_link(&layout::tag_index_link(name, tag, d), d)
                .await?;
            let key = layout::tag_current_link(name, tag);
            let put = self
                .store
                .put_opts(
                    &key,
                    PutPayload::from(d.to_string().into_bytes()),
                    PutMode::Create.into(),
                )
                .await;
            // The metadata cache's contract: this process's writes
            // invalidate what they touch (even a failed one may have landed).
            self.meta.invalidate(&key);
            match put {
                Ok(_) => return Ok(Ok(())),
                // Someone else created it first: read who (again).
                Err(object_store::Error::AlreadyExists { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        // Created and deleted under us three times: report what is there.
        Ok(match self.resolve_tag(name, tag).await? {
            Some(current) if &current != d => Err(current),
            _ => Ok(()),
        })
    }
}
