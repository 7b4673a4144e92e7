//! SHA-256 state that survives between requests and processes: an upload's
//! chunks are hashed as they stream in, and the state is stored with each
//! chunk, so the final digest check never re-reads the data and any process
//! can continue an upload another one started.

use base64::Engine as _;
use sha2::digest::common::hazmat::{SerializableState, SerializedState};
use sha2::{Digest as _, Sha256};

use crate::oci::Digest;

#[derive(Clone, Default)]
pub struct ResumableSha256(Sha256);

impl ResumableSha256 {
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn digest(&self) -> Digest {
        Digest::from_sha256_bytes(&self.0.clone().finalize())
    }

    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0.serialize())
    }

    pub fn from_base64(s: &str) -> Option<ResumableSha256> {
        let raw = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
        let state = SerializedState::<Sha256>::try_from(raw.as_slice()).ok()?;
        Sha256::deserialize(&state).ok().map(ResumableSha256)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resumes_mid_block() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let mut h = ResumableSha256::default();
        h.update(&data[..333]);
        let mut resumed = ResumableSha256::from_base64(&h.to_base64()).unwrap();
        resumed.update(&data[333..]);
        assert_eq!(resumed.digest(), Digest::sha256_of(&data));
        assert!(ResumableSha256::from_base64("AAAA").is_none());
    }
}
