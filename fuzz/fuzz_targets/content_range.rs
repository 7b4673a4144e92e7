//! Upload PATCH `Content-Range` with `Content-Length`
//! (`api::uploads::chunk_bounds`). The bytes up to the first NUL are the
//! Content-Range value, what follows (if any) the Content-Length value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registry::api::uploads::chunk_bounds;

fuzz_target!(|data: &[u8]| {
    let (range, length) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let mut request = http::Request::builder().method("PATCH").uri("/");
    let Ok(range_value) = http::HeaderValue::from_bytes(range) else {
        return;
    };
    request = request.header(http::header::CONTENT_RANGE, range_value);
    if let Some(length) = length {
        let Ok(value) = http::HeaderValue::from_bytes(length) else {
            return;
        };
        request = request.header(http::header::CONTENT_LENGTH, value);
    }
    let Ok(request) = request.body(()) else {
        return;
    };
    let (parts, ()) = request.into_parts();
    if let Ok((start, len)) = chunk_bounds(&parts) {
        // A Content-Range always yields both, a chunk of at least one byte
        // whose last byte is addressable.
        let (start, len) = (start.unwrap(), len.unwrap());
        assert!(len >= 1, "{:?}: len 0", String::from_utf8_lossy(range));
        assert!(start.checked_add(len - 1).is_some());
        let text = std::str::from_utf8(range).unwrap();
        assert!(text.contains(&start.to_string()));
    }
});
