//! SHA-256 state that survives between requests and processes: an upload's
//! chunks are hashed as they stream in, and the state is stored with each
//! chunk, so the final digest check never re-reads the data and any process
//! can continue an upload another one started.

use base64::Engine as _;
use bytes::Bytes;
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

/// Bodies up to this size are hashed on the task that receives them; past
/// it, hashing moves to a blocking thread so it overlaps with receiving and
/// writing (SHA-256 is the largest CPU cost of a push).
const HASH_INLINE_UP_TO: u64 = 4 << 20;
/// Pieces go to the hashing thread in batches of about this many bytes, so
/// it wakes up once per batch rather than once per network read.
const HASH_BATCH: usize = 1 << 20;
/// Batches queued for the hashing thread: bounds the memory it holds on to.
const HASH_QUEUE: usize = 4;

/// A running SHA-256 over a streamed body, fed piece by piece in order.
pub struct PipelinedSha256 {
    seen: u64,
    stage: Stage,
}

enum Stage {
    Inline(ResumableSha256),
    Offloaded {
        batch: Vec<Bytes>,
        batched: usize,
        queue: tokio::sync::mpsc::Sender<Vec<Bytes>>,
        done: tokio::task::JoinHandle<ResumableSha256>,
    },
}

impl PipelinedSha256 {
    pub fn new(state: ResumableSha256) -> PipelinedSha256 {
        PipelinedSha256 {
            seen: 0,
            stage: Stage::Inline(state),
        }
    }

    pub async fn update(&mut self, piece: &Bytes) {
        self.seen += piece.len() as u64;
        if let Stage::Inline(state) = &mut self.stage {
            if self.seen <= HASH_INLINE_UP_TO {
                state.update(piece);
                return;
            }
            let mut state = std::mem::take(state);
            let (queue, mut batches) = tokio::sync::mpsc::channel::<Vec<Bytes>>(HASH_QUEUE);
            let done = tokio::task::spawn_blocking(move || {
                while let Some(batch) = batches.blocking_recv() {
                    for piece in batch {
                        state.update(&piece);
                    }
                }
                state
            });
            self.stage = Stage::Offloaded {
                batch: Vec::new(),
                batched: 0,
                queue,
                done,
            };
        }
        if let Stage::Offloaded {
            batch,
            batched,
            queue,
            ..
        } = &mut self.stage
        {
            batch.push(piece.clone());
            *batched += piece.len();
            if *batched >= HASH_BATCH {
                *batched = 0;
                // The thread only stops when the queue closes, so this
                // cannot fail.
                let _ = queue.send(std::mem::take(batch)).await;
            }
        }
    }

    pub async fn finish(self) -> ResumableSha256 {
        match self.stage {
            Stage::Inline(state) => state,
            Stage::Offloaded {
                batch, queue, done, ..
            } => {
                let _ = queue.send(batch).await;
                drop(queue);
                done.await.expect("hashing thread does not panic")
            }
        }
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

    #[tokio::test]
    async fn pipelined_hash_matches_past_the_offload_point() {
        let piece = Bytes::from(vec![7u8; 300_000]);
        let mut h = PipelinedSha256::new(ResumableSha256::default());
        let mut all = Vec::new();
        for _ in 0..20 {
            h.update(&piece).await;
            all.extend_from_slice(&piece);
        }
        assert!(all.len() as u64 > HASH_INLINE_UP_TO);
        assert_eq!(h.finish().await.digest(), Digest::sha256_of(&all));
    }
}
