//! Manifest media types and the checks a manifest passes before it is stored.
//! Parsing uses `oci-spec`'s types; Docker schema2 manifests and manifest lists
//! share the OCI shapes field for field, so one parser serves all four kinds.

use std::collections::BTreeMap;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use serde_json::Value;

use super::digest::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_SCHEMA1: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// Manifests larger than this are refused (the limit registry:2 and the
/// Distribution spec's guidance use).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// Every manifest media type we store and serve.
pub const SUPPORTED: [&str; 4] = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

/// What the registry needs to know about a manifest to store it and to
/// answer referrers queries about it.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub media_type: String,
    /// Blobs (config and layers) that must already be in the repository.
    pub blobs: Vec<Digest>,
    /// The same blobs as their descriptors say them: where in the manifest
    /// (`config`, `layers[2]`) and the size, which must be the stored size.
    pub blob_descriptors: Vec<BlobDescriptor>,
    /// Child manifests (of an index) that must already be in the repository.
    pub children: Vec<Digest>,
    pub subject: Option<Digest>,
    /// `artifactType`, or for an image manifest without one its config's
    /// media type, as the referrers API reports it.
    pub artifact_type: Option<String>,
    pub annotations: Option<BTreeMap<String, String>>,
}

/// A blob descriptor of an image manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobDescriptor {
    pub field: String,
    pub digest: Digest,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("descriptor {field}: size must be a non-negative integer, not {size}")]
    BadDescriptorSize { field: String, size: String },
    #[error("manifest is not a JSON object: {0}")]
    NotJson(String),
    #[error("schema version 1 manifests are not supported; push a schema 2 or OCI manifest")]
    Schema1,
    #[error("manifest schemaVersion must be 2")]
    SchemaVersion,
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedMediaType(String),
    #[error("manifest mediaType {body:?} does not match Content-Type {header:?}")]
    MediaTypeMismatch { body: String, header: String },
    #[error("manifest does not match its media type {media_type}: {reason}")]
    Shape { media_type: String, reason: String },
    #[error("descriptor digest {0:?} is invalid or uses an unsupported algorithm")]
    BadDescriptorDigest(String),
}

/// Strips parameters (`; charset=...`) and whitespace from a Content-Type.
pub fn bare_media_type(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

fn descriptor_digest(d: &Descriptor) -> Result<Digest, ManifestError> {
    let s = d.digest().to_string();
    s.parse().map_err(|_| ManifestError::BadDescriptorDigest(s))
}

/// Parses and validates a manifest body pushed with `content_type`.
pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<Manifest, ManifestError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ManifestError::NotJson(e.to_string()))?;
    let object = value
        .as_object()
        .ok_or_else(|| ManifestError::NotJson("top level is not an object".into()))?;
    let header = content_type.map(bare_media_type).filter(|t| !t.is_empty());
    let in_body = object.get("mediaType").and_then(Value::as_str);

    if object.get("schemaVersion").and_then(Value::as_u64) == Some(1)
        || in_body.is_some_and(|t| DOCKER_SCHEMA1.contains(&t))
        || header.is_some_and(|t| DOCKER_SCHEMA1.contains(&t))
    {
        return Err(ManifestError::Schema1);
    }
    if object.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
        return Err(ManifestError::SchemaVersion);
    }

    let media_type = match (in_body, header) {
        (Some(body), Some(header)) if body != header => {
            return Err(ManifestError::MediaTypeMismatch {
                body: body.into(),
                header: header.into(),
            })
        }
        (Some(t), _) => t.to_owned(),
        (None, Some(t)) if SUPPORTED.contains(&t) => t.to_owned(),
        // OCI manifests may omit mediaType; the shape tells which one it is.
        (None, _) if object.contains_key("manifests") => OCI_INDEX.to_owned(),
        (None, _) if object.contains_key("config") => OCI_MANIFEST.to_owned(),
        (None, Some(t)) => return Err(ManifestError::UnsupportedMediaType(t.into())),
        (None, None) => return Err(ManifestError::UnsupportedMediaType(String::new())),
    };
    if !SUPPORTED.contains(&media_type.as_str()) {
        return Err(ManifestError::UnsupportedMediaType(media_type));
    }
    check_descriptor_sizes(object)?;
    let shape = |e: serde_json::Error| ManifestError::Shape {
        media_type: media_type.clone(),
        reason: e.to_string(),
    };

    if media_type == OCI_INDEX || media_type == DOCKER_LIST {
        let index: ImageIndex = serde_json::from_value(value.clone()).map_err(shape)?;
        let children = index
            .manifests()
            .iter()
            .map(descriptor_digest)
            .collect::<Result<_, _>>()?;
        let subject = index
            .subject()
            .as_ref()
            .map(descriptor_digest)
            .transpose()?;
        Ok(Manifest {
            blobs: Vec::new(),
            blob_descriptors: Vec::new(),
            children,
            subject,
            artifact_type: index.artifact_type().as_ref().map(|t| t.to_string()),
            annotations: index.annotations().as_ref().map(to_btree),
            media_type,
        })
    } else {
        let image: ImageManifest = serde_json::from_value(value.clone()).map_err(shape)?;
        let mut blob_descriptors = vec![BlobDescriptor {
            field: "config".into(),
            digest: descriptor_digest(image.config())?,
            size: image.config().size(),
        }];
        for (i, layer) in image.layers().iter().enumerate() {
            // Foreign (non-distributable) layers live elsewhere, named by URL.
            if layer.urls().as_ref().is_some_and(|u| !u.is_empty()) {
                descriptor_digest(layer)?;
                continue;
            }
            blob_descriptors.push(BlobDescriptor {
                field: format!("layers[{i}]"),
                digest: descriptor_digest(layer)?,
                size: layer.size(),
            });
        }
        let blobs = blob_descriptors.iter().map(|d| d.digest.clone()).collect();
        let subject = image
            .subject()
            .as_ref()
            .map(descriptor_digest)
            .transpose()?;
        let artifact_type = image
            .artifact_type()
            .as_ref()
            .map(|t| t.to_string())
            .or_else(|| Some(image.config().media_type().to_string()));
        Ok(Manifest {
            blobs,
            blob_descriptors,
            children: Vec::new(),
            subject,
            artifact_type,
            annotations: image.annotations().as_ref().map(to_btree),
            media_type,
        })
    }
}

/// Every descriptor's `size` must be a non-negative integer. Checked on the
/// JSON before it is typed, so the error names the descriptor (`layers[1]`)
/// rather than a column of the document.
fn check_descriptor_sizes(object: &serde_json::Map<String, Value>) -> Result<(), ManifestError> {
    let check = |field: String, descriptor: &Value| match descriptor.get("size") {
        Some(size) if size.as_u64().is_none() => Err(ManifestError::BadDescriptorSize {
            field,
            size: size.to_string(),
        }),
        _ => Ok(()),
    };
    for single in ["config", "subject"] {
        if let Some(d) = object.get(single) {
            check(single.to_owned(), d)?;
        }
    }
    for list in ["layers", "manifests", "blobs"] {
        if let Some(items) = object.get(list).and_then(Value::as_array) {
            for (i, d) in items.iter().enumerate() {
                check(format!("{list}[{i}]"), d)?;
            }
        }
    }
    Ok(())
}

fn to_btree(map: &std::collections::HashMap<String, String>) -> BTreeMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Whether a client's `Accept` header admits `media_type`. No header, or one
/// that names no manifest type at all (`*/*`, `application/json`), admits
/// everything: only a client that lists manifest types is held to its list.
/// The media type a stored manifest is served with: its `mediaType` field,
/// else what its shape says (OCI manifests may omit the field).
pub fn stored_media_type(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde::de::IgnoredAny>,
    }
    match serde_json::from_slice::<Probe>(body) {
        Ok(Probe {
            media_type: Some(t),
            ..
        }) => t,
        Ok(Probe {
            manifests: Some(_), ..
        }) => OCI_INDEX.into(),
        _ => OCI_MANIFEST.into(),
    }
}

pub fn accepts(accept: &[&str], media_type: &str) -> bool {
    let listed: Vec<&str> = accept
        .iter()
        .flat_map(|h| h.split(','))
        .map(bare_media_type)
        .collect();
    let names_manifests = listed
        .iter()
        .any(|t| SUPPORTED.contains(t) || DOCKER_SCHEMA1.contains(t));
    !names_manifests || listed.iter().any(|t| *t == media_type || *t == "*/*")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn image(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,{extra}"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{CFG}","size":0}},"layers":[]}}"#
        )
    }

    #[test]
    fn image_without_media_type_is_oci() {
        let m = parse(image("").as_bytes(), None).unwrap();
        assert_eq!(m.media_type, OCI_MANIFEST);
        assert_eq!(m.blobs.len(), 1);
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
    }

    #[test]
    fn media_type_must_match_header() {
        let body = image(&format!(r#""mediaType":"{OCI_MANIFEST}","#));
        assert!(parse(body.as_bytes(), Some(OCI_MANIFEST)).is_ok());
        assert!(matches!(
            parse(body.as_bytes(), Some(DOCKER_MANIFEST)),
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
    }

    #[test]
    fn negative_descriptor_sizes_are_named() {
        let layer = |size: &str| {
            format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{CFG}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{CFG}","size":1}},{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{CFG}","size":{size}}}]}}"#
            )
        };
        for size in ["-1", "1.5", "\"3\"", "-9223372036854775808"] {
            match parse(layer(size).as_bytes(), None) {
                Err(ManifestError::BadDescriptorSize { field, .. }) => {
                    assert_eq!(field, "layers[1]", "{size}")
                }
                other => panic!("{size}: {other:?}"),
            }
        }
        let m = parse(layer("7").as_bytes(), None).unwrap();
        let fields: Vec<_> = m
            .blob_descriptors
            .iter()
            .map(|d| (d.field.as_str(), d.size))
            .collect();
        assert_eq!(fields, [("config", 2), ("layers[0]", 1), ("layers[1]", 7)]);
    }

    #[test]
    fn refuses_garbage() {
        assert!(matches!(
            parse(b"null", None),
            Err(ManifestError::NotJson(_))
        ));
        assert!(matches!(parse(b"[]", None), Err(ManifestError::NotJson(_))));
        assert!(matches!(parse(b"{", None), Err(ManifestError::NotJson(_))));
        assert!(matches!(
            parse(br#"{"schemaVersion":1,"name":"x"}"#, None),
            Err(ManifestError::Schema1)
        ));
        assert!(matches!(
            parse(br#"{"schemaVersion":2,"mediaType":"text/plain"}"#, None),
            Err(ManifestError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            parse(
                br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{}}"#,
                None
            ),
            Err(ManifestError::Shape { .. })
        ));
    }

    #[test]
    fn accept_negotiation() {
        assert!(accepts(&[], OCI_INDEX));
        assert!(accepts(&["*/*"], OCI_INDEX));
        assert!(accepts(&["application/json"], OCI_INDEX));
        assert!(accepts(
            &[&format!("{DOCKER_MANIFEST}, {OCI_INDEX}")],
            OCI_INDEX
        ));
        assert!(!accepts(&[DOCKER_MANIFEST], OCI_INDEX));
    }
}
