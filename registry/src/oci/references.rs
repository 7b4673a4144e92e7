//! What a manifest references, read leniently: gc's mark phase, scrub's
//! link checks and retention's untagged-manifest walk read every manifest
//! a registry may hold with it, whatever its shape.

use serde_json::Value;

use super::Digest;

/// What a manifest references, read leniently: every shape a registry may
/// hold (OCI and Docker manifests and indexes, Docker schema 1, OCI artifact
/// manifests). A descriptor whose digest we cannot parse names no blob we
/// could have stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refs {
    pub blobs: Vec<Digest>,
    /// Foreign (non-distributable) layers, fetched from their `urls`: a
    /// registry need not hold them; kept when it does.
    pub foreign: Vec<Digest>,
    pub children: Vec<Digest>,
    pub subject: Option<Digest>,
}

pub fn references(body: &[u8]) -> Result<Refs, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let obj = v.as_object().ok_or("not a JSON object")?;
    let digest_at =
        |d: &Value, field: &str| -> Option<Digest> { d.get(field)?.as_str()?.parse().ok() };
    let list = |name: &str| -> Vec<&Value> {
        obj.get(name)
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default()
    };
    let mut refs = Refs::default();
    if let Some(c) = obj.get("config") {
        refs.blobs.extend(digest_at(c, "digest"));
    }
    for l in list("layers").into_iter().chain(list("blobs")) {
        let foreign = l
            .get("urls")
            .and_then(Value::as_array)
            .is_some_and(|u| !u.is_empty());
        if foreign {
            refs.foreign.extend(digest_at(l, "digest"));
        } else {
            refs.blobs.extend(digest_at(l, "digest"));
        }
    }
    for l in list("fsLayers") {
        refs.blobs.extend(digest_at(l, "blobSum"));
    }
    for m in list("manifests") {
        refs.children.extend(digest_at(m, "digest"));
    }
    refs.subject = obj.get("subject").and_then(|s| digest_at(s, "digest"));
    Ok(refs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const B: &str = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

    #[test]
    fn references_of_every_manifest_shape() {
        let image = format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{A}"}},"layers":[{{"digest":"{B}"}},{{"digest":"md5:zz"}}],"subject":{{"digest":"{A}"}}}}"#
        );
        let r = references(image.as_bytes()).unwrap();
        assert_eq!(r.blobs, vec![A.parse().unwrap(), B.parse().unwrap()]);
        assert_eq!(r.subject, Some(A.parse().unwrap()));
        let index = format!(r#"{{"schemaVersion":2,"manifests":[{{"digest":"{B}"}}]}}"#);
        assert_eq!(
            references(index.as_bytes()).unwrap().children,
            vec![B.parse().unwrap()]
        );
        let schema1 = format!(r#"{{"schemaVersion":1,"fsLayers":[{{"blobSum":"{A}"}}]}}"#);
        assert_eq!(
            references(schema1.as_bytes()).unwrap().blobs,
            vec![A.parse().unwrap()]
        );
        let artifact = format!(r#"{{"blobs":[{{"digest":"{B}"}}]}}"#);
        assert_eq!(
            references(artifact.as_bytes()).unwrap().blobs,
            vec![B.parse().unwrap()]
        );
        assert!(references(b"not json").is_err());
        assert!(references(b"[1]").is_err());
    }
}
