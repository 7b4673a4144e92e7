//! Manifests are content-addressed: the bytes under a digest never change,
//! so a small in-memory cache saves one storage read per manifest GET
//! without any invalidation. Whether a repository holds the manifest is
//! still asked of storage every time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::oci::Digest;

/// Total bytes kept; manifests are a few KiB, so this holds thousands.
const CAPACITY: usize = 8 * 1024 * 1024;
/// Larger manifests (rare, up to 4 MiB) are not cached.
const MAX_ENTRY: usize = 64 * 1024;

/// A cached manifest: its bytes and the media type they are served with.
pub type Entry = (Bytes, Arc<str>);

#[derive(Default)]
pub struct ManifestCache {
    /// Digest → (bytes, the media type they are served with), and the
    /// bytes held.
    inner: Mutex<(HashMap<Digest, Entry>, usize)>,
}

impl ManifestCache {
    pub fn get(&self, d: &Digest) -> Option<Entry> {
        self.inner.lock().unwrap().0.get(d).cloned()
    }

    pub fn insert(&self, d: &Digest, body: &Bytes, media_type: &Arc<str>) {
        if body.len() > MAX_ENTRY {
            return;
        }
        let mut inner = self.inner.lock().unwrap();
        let (map, total) = &mut *inner;
        if *total + body.len() > CAPACITY {
            // Crude but bounded: start over rather than track recency.
            map.clear();
            *total = 0;
        }
        if map
            .insert(d.clone(), (body.clone(), media_type.clone()))
            .is_none()
        {
            *total += body.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_within_its_capacity() {
        let c = ManifestCache::default();
        let body = Bytes::from(vec![0u8; MAX_ENTRY]);
        let t: Arc<str> = "application/json".into();
        for i in 0..(2 * CAPACITY / MAX_ENTRY) {
            c.insert(&Digest::sha256_of(&i.to_le_bytes()), &body, &t);
            assert!(c.inner.lock().unwrap().1 <= CAPACITY);
        }
        let d = Digest::sha256_of(b"x");
        let bytes = |c: &ManifestCache| c.get(&d).map(|(b, _)| b);
        c.insert(&d, &Bytes::from_static(b"{}"), &t);
        assert_eq!(bytes(&c).as_deref(), Some(&b"{}"[..]));
        c.insert(&d, &Bytes::from(vec![0u8; MAX_ENTRY + 1]), &t);
        assert_eq!(bytes(&c).as_deref(), Some(&b"{}"[..]));
    }
}
