//! The blob GET `Range` header (`api::blobs::parse_range`), resolved
//! against the blob's size. First 8 bytes: the size; the rest: the header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registry::api::blobs::{parse_range, ByteRange};

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (size, header) = data.split_at(8);
    let mut size = u64::from_le_bytes(size.try_into().unwrap());
    // Mostly small sizes, where the edge cases are; sometimes huge ones.
    if size & 1 == 0 {
        size = (size >> 1) % 4096;
    }
    let Ok(header) = std::str::from_utf8(header) else {
        return;
    };
    match parse_range(Some(header), size) {
        // Served as `start..end + 1` of the blob: must be inside it.
        ByteRange::Part { start, end } => {
            assert!(
                start <= end && end < size,
                "{header:?} {size}: {start}-{end}"
            )
        }
        ByteRange::Whole | ByteRange::Unsatisfiable => {}
    }
    assert_eq!(parse_range(None, size), ByteRange::Whole);
});
