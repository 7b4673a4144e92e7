//! `oci::manifest::parse`: a pushed manifest or index body with its
//! Content-Type. The first byte picks the Content-Type, the rest is the
//! body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registry::oci::manifest::{
    parse, DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, SUPPORTED,
};
use registry::oci::Digest;

const TYPES: [Option<&str>; 9] = [
    None,
    Some(OCI_MANIFEST),
    Some(OCI_INDEX),
    Some(DOCKER_MANIFEST),
    Some(DOCKER_LIST),
    Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
    Some("application/json"),
    Some(""),
    Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let content_type = TYPES[first as usize % TYPES.len()];
    let Ok(m) = parse(body, content_type) else {
        return;
    };
    assert!(
        SUPPORTED.contains(&m.media_type.as_str()),
        "{}",
        m.media_type
    );
    let is_index = m.media_type == OCI_INDEX || m.media_type == DOCKER_LIST;
    if is_index {
        assert!(m.blobs.is_empty());
    } else {
        // An image manifest always names its config.
        assert!(!m.blobs.is_empty() && m.children.is_empty());
    }
    for d in m.blobs.iter().chain(&m.children).chain(&m.subject) {
        assert_eq!(d.to_string().parse::<Digest>().as_ref(), Ok(d));
    }
    // Deterministic: the same bytes give the same answer.
    let again = parse(body, content_type).unwrap();
    assert_eq!(again.media_type, m.media_type);
    assert_eq!(again.blobs, m.blobs);
    assert_eq!(again.children, m.children);
});
