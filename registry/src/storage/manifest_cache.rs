//! Manifests are content-addressed: the bytes under a digest never change,
//! so a small in-memory cache saves one storage read per manifest GET
//! without any invalidation. Whether a repository holds the manifest is
//! still asked of storage every time.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;

use crate::oci::Digest;

/// Total bytes kept; manifests are a few KiB, so this holds thousands.
const CAPACITY: usize = 8 * 1024 * 1024;
/// Larger manifests (rare, up to 4 MiB) are not cached.
const MAX_ENTRY: usize = 64 * 1024;

#[derive(Default)]
pub struct ManifestCache {
    inner: Mutex<(HashMap<Digest, Bytes>, usize)>,
}

impl ManifestCache {
    pub fn get(&self, d: &Digest) -> Option<Bytes> {
        self.inner.lock().unwrap().0.get(d).cloned()
    }

    pub fn insert(&self, d: &Digest, body: &Bytes) {
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
        if map.insert(d.clone(), body.clone()).is_none() {
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
        for i in 0..(2 * CAPACITY / MAX_ENTRY) {
            c.insert(&Digest::sha256_of(&i.to_le_bytes()), &body);
            assert!(c.inner.lock().unwrap().1 <= CAPACITY);
        }
        let d = Digest::sha256_of(b"x");
        c.insert(&d, &Bytes::from_static(b"{}"));
        assert_eq!(c.get(&d).as_deref(), Some(&b"{}"[..]));
        c.insert(&d, &Bytes::from(vec![0u8; MAX_ENTRY + 1]));
        assert_eq!(c.get(&d).as_deref(), Some(&b"{}"[..]));
    }
}
