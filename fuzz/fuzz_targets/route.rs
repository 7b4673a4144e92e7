//! `api::route::parse`: the raw path after `/v2/`, read from its end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registry::protocol::route::{parse, Route};

fuzz_target!(|data: &[u8]| {
    let Ok(rest) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(route) = parse(rest) else {
        return;
    };
    // The route says the whole path again: nothing dropped or invented.
    let candidates: Vec<String> = match &route {
        Route::Catalog => vec!["_catalog".into()],
        Route::Tags(n) => vec![format!("{n}/tags/list")],
        Route::Manifest(n, r) => vec![format!("{n}/manifests/{r}")],
        Route::Blob(n, d) => vec![format!("{n}/blobs/{d}")],
        Route::UploadStart(n) => vec![format!("{n}/blobs/uploads"), format!("{n}/blobs/uploads/")],
        Route::Upload(n, id) => vec![format!("{n}/blobs/uploads/{id}")],
        Route::Referrers(n, d) => vec![format!("{n}/referrers/{d}")],
        Route::ExtRepositories => vec!["_ext/repositories".into()],
        Route::ExtTags(n) => vec![format!("{n}/_ext/tags")],
        Route::Repository(n) => vec![format!("_ext/repositories/{n}")],
    };
    assert!(
        candidates.iter().any(|c| c == rest),
        "{rest:?} parsed as {route:?}"
    );
    // The last component (reference, digest, upload id) never holds a '/'.
    if let Route::Manifest(_, s)
    | Route::Blob(_, s)
    | Route::Upload(_, s)
    | Route::Referrers(_, s) = &route
    {
        assert!(!s.contains('/'));
    }
});
