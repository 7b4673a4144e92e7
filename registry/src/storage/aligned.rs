//! Buffers aligned for `O_DIRECT`, and the re-cutting of request bodies into
//! them.

use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Alignment of `O_DIRECT` buffers, offsets and lengths: the largest
/// logical block size in common use, so it suits 512-byte devices too.
pub const ALIGN: usize = 4096;

/// A heap buffer whose usable window starts at an `ALIGN`ed address; owns
/// its bytes so it can become a `Bytes` without a copy.
pub struct Aligned {
    buf: Vec<u8>,
    start: usize,
    /// Upload blocks count against the process-wide budget until dropped.
    _permit: Option<OwnedSemaphorePermit>,
}

impl Aligned {
    /// An empty buffer with room for `len` aligned bytes.
    pub fn with_capacity(len: usize) -> Aligned {
        let mut buf: Vec<u8> = Vec::with_capacity(len + ALIGN);
        let start = buf.as_ptr().align_offset(ALIGN);
        // Only the padding is initialised here; the window is filled by
        // `extend` (writes) or zeroed by `zeroed` (reads).
        buf.resize(start, 0);
        Aligned {
            buf,
            start,
            _permit: None,
        }
    }

    pub fn zeroed(len: usize) -> Aligned {
        let mut a = Aligned::with_capacity(len);
        a.buf.resize(a.start + len, 0);
        a
    }

    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Room left before the buffer would move (and lose its alignment).
    pub fn room(&self) -> usize {
        self.buf.capacity() - self.buf.len()
    }

    pub fn extend(&mut self, bytes: &[u8]) {
        debug_assert!(bytes.len() <= self.room());
        self.buf.extend_from_slice(bytes);
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..]
    }

    pub fn into_bytes(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for Aligned {
    fn as_ref(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

/// Whether `b` starts at an `ALIGN`ed address (so `O_DIRECT` can write it
/// as it is).
pub fn is_aligned(b: &[u8]) -> bool {
    b.as_ptr().align_offset(ALIGN) == 0
}

/// Parts grow to at most this many times the first part's size.
const MAX_GROWTH: usize = 4;

/// The sizes of the parts one upload is cut into: all `base`, or (for a
/// backend with a limit on the number of parts) `base` for the first
/// `grow_every` parts, then doubling every `grow_every` parts up to
/// `MAX_GROWTH` times `base`. Small parts keep memory low; growth keeps the
/// largest possible object large.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartSizes {
    base: usize,
    grow_every: Option<usize>,
}

impl PartSizes {
    pub fn fixed(base: usize) -> PartSizes {
        PartSizes {
            base,
            grow_every: None,
        }
    }

    /// Fits `max_parts` parts: the first quarter of them at `base`.
    pub fn growing(base: usize, max_parts: usize) -> PartSizes {
        PartSizes {
            base,
            grow_every: Some((max_parts / MAX_GROWTH).max(1)),
        }
    }

    pub fn base(&self) -> usize {
        self.base
    }

    /// Size of part `index` (from 0).
    pub fn size_of(&self, index: usize) -> usize {
        match self.grow_every {
            None => self.base,
            Some(n) => self.base * (1 << (index / n)).min(MAX_GROWTH),
        }
    }
}

/// How many base-size upload blocks may be in memory at once, across all
/// uploads: past it, uploads wait (their data waits in the kernel's socket
/// buffers), so memory stays bounded whatever the number of clients.
pub fn upload_budget(block_size: usize, budget_bytes: usize) -> Arc<Semaphore> {
    // One upload needs a block filling, two being written and one being
    // hashed to keep moving at full speed; and a grown block takes up to
    // `MAX_GROWTH` permits, which must exist.
    Arc::new(Semaphore::new(
        (budget_bytes / block_size).max(4).max(MAX_GROWTH),
    ))
}

/// Re-cuts a body into blocks of `sizes` (the last may be shorter), each
/// one aligned allocation counted against `budget` (one permit per base
/// size). Network buffers are
/// released as soon as they are copied, so an upload holds its blocks in
/// flight and nothing else, and the disk backend writes each block without
/// another copy. A block's permit is returned when the last `Bytes` of it
/// (writer's or hasher's) is dropped, so no upload waits on itself.
pub fn reblock<S, E>(
    body: S,
    sizes: PartSizes,
    budget: Arc<Semaphore>,
) -> impl Stream<Item = Result<Bytes, E>>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    struct State<S> {
        body: S,
        block: Option<Aligned>,
        pending: Bytes,
        ended: bool,
        budget: Arc<Semaphore>,
        /// Blocks started so far, and the size of the current one.
        count: usize,
        size: usize,
    }
    let state = State {
        body,
        block: None,
        pending: Bytes::new(),
        ended: false,
        budget,
        count: 0,
        size: sizes.base(),
    };
    futures::stream::unfold(state, move |mut st| async move {
        loop {
            if !st.pending.is_empty() && st.block.is_none() {
                st.size = sizes.size_of(st.count);
                st.count += 1;
                let permits = (st.size / sizes.base()) as u32;
                let permit = st
                    .budget
                    .clone()
                    .acquire_many_owned(permits)
                    .await
                    .expect("the budget is never closed");
                let mut block = Aligned::with_capacity(st.size);
                block._permit = Some(permit);
                st.block = Some(block);
            }
            let filled = st.block.as_ref().map_or(0, Aligned::len);
            if let (Some(block), false) = (&mut st.block, st.pending.is_empty()) {
                let take = st.pending.len().min(st.size - filled);
                block.extend(&st.pending.split_to(take));
            }
            let filled = st.block.as_ref().map_or(0, Aligned::len);
            if filled == st.size || (st.ended && filled > 0) {
                let full = st.block.take().expect("a block with data");
                return Some((Ok(full.into_bytes()), st));
            }
            if st.ended {
                return None;
            }
            if st.pending.is_empty() {
                match st.body.next().await {
                    Some(Ok(piece)) => st.pending = piece,
                    Some(Err(e)) => {
                        // The body failed: what was read of it is useless.
                        st.ended = true;
                        st.block = None;
                        return Some((Err(e), st));
                    }
                    None => st.ended = true,
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;

    #[tokio::test]
    async fn blocks_are_full_aligned_and_in_order() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        let pieces: Vec<Result<Bytes, ()>> = data
            .chunks(7777)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let blocks: Vec<Bytes> = reblock(
            futures::stream::iter(pieces),
            PartSizes::fixed(8192),
            budget(),
        )
        .try_collect()
        .await
        .unwrap();
        assert_eq!(blocks.len(), 100_000usize.div_ceil(8192));
        assert!(blocks.iter().all(|b| is_aligned(b)));
        assert!(blocks[..blocks.len() - 1].iter().all(|b| b.len() == 8192));
        assert_eq!(blocks.concat(), data);
    }

    #[tokio::test]
    async fn errors_pass_through_and_empty_bodies_give_nothing() {
        let failing = futures::stream::iter(vec![Ok(Bytes::from_static(b"abc")), Err("cut")]);
        let got: Vec<_> = reblock(failing, PartSizes::fixed(8192), budget())
            .collect()
            .await;
        assert_eq!(got, vec![Err("cut")]);
        let empty = futures::stream::iter(Vec::<Result<Bytes, ()>>::new());
        assert_eq!(
            reblock(empty, PartSizes::fixed(8192), budget())
                .collect::<Vec<_>>()
                .await,
            vec![]
        );
    }

    /// Room for every block these tests hold at once.
    fn budget() -> Arc<Semaphore> {
        upload_budget(8192, 64 * 8192)
    }

    #[tokio::test]
    async fn a_body_waits_for_budget_and_goes_on_when_blocks_are_dropped() {
        let budget = upload_budget(8192, 0);
        let body =
            futures::stream::iter((0..10).map(|_| Ok::<_, ()>(Bytes::from(vec![1u8; 8192]))));
        let mut blocks = std::pin::pin!(reblock(body, PartSizes::fixed(8192), budget.clone()));
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(blocks.next().await.unwrap().unwrap());
        }
        assert_eq!(budget.available_permits(), 0);
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(50), blocks.next()).await;
        assert!(waiting.is_err(), "a fifth block waits while four are held");
        held.clear();
        let mut rest = 0;
        while let Some(b) = blocks.next().await {
            assert_eq!(b.unwrap().len(), 8192);
            rest += 1;
        }
        assert_eq!(rest, 6);
        assert_eq!(budget.available_permits(), 4);
    }

    #[test]
    fn growing_parts_double_every_quarter_of_the_limit_up_to_four_times() {
        let mib = 1 << 20;
        let s3 = PartSizes::growing(5 * mib, 10_000);
        let sizes: Vec<usize> = [0, 2_499, 2_500, 4_999, 5_000, 7_499, 7_500, 9_999]
            .iter()
            .map(|&i| s3.size_of(i) / mib)
            .collect();
        assert_eq!(sizes, [5, 5, 10, 10, 20, 20, 20, 20]);
        // 10,000 parts then hold well over registry:2's 10,000 × 10 MiB.
        let total: usize = (0..10_000).map(|i| s3.size_of(i)).sum();
        assert!(total > 10_000 * 10 * mib, "{}", total / mib);
        assert_eq!(PartSizes::fixed(mib).size_of(1_000_000), mib);
    }

    #[tokio::test]
    async fn grown_blocks_take_more_of_the_budget() {
        let sizes = PartSizes::growing(4096, 8);
        let budget = upload_budget(4096, 4 * 4096);
        let body =
            futures::stream::iter((0..40).map(|_| Ok::<_, ()>(Bytes::from(vec![7u8; 1000]))));
        let mut blocks = std::pin::pin!(reblock(body, sizes, budget.clone()));
        let mut lens = Vec::new();
        while let Some(b) = blocks.next().await {
            let b = b.unwrap();
            assert!(is_aligned(&b));
            if b.len() == 2 * 4096 {
                assert_eq!(
                    budget.available_permits(),
                    2,
                    "a double block holds two permits"
                );
            }
            lens.push(b.len());
        }
        assert_eq!(lens, [4096, 4096, 8192, 8192, 40_000 - 24_576]);
        assert_eq!(budget.available_permits(), 4);
    }
}
