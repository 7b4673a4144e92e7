//! Writes and reads OCI image layout directories (`oci-layout`, `index.json`,
//! `blobs/sha256/...`) so tests can feed real clients (skopeo's `oci:`
//! transport) images made here, with no image from anywhere else.
//!
//! Layers are real tar archives (ustar) and real gzip files (deflate "stored"
//! blocks: valid for every gzip reader, no compression library needed).

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

/// Deterministic incompressible bytes (xorshift64*), so big layers need no
/// randomness source and differ by seed.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A minimal ustar writer: directories and regular files.
#[derive(Default)]
pub struct Tar {
    buf: Vec<u8>,
}

impl Tar {
    pub fn new() -> Tar {
        Tar::default()
    }

    pub fn dir(mut self, path: &str) -> Tar {
        let path = format!("{}/", path.trim_end_matches('/'));
        self.header(&path, 0o755, 0, b'5');
        self
    }

    pub fn file(mut self, path: &str, mode: u32, data: &[u8]) -> Tar {
        self.header(path, mode, data.len() as u64, b'0');
        self.buf.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.buf.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    /// The archive with its two zero end blocks.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend(std::iter::repeat_n(0u8, 1024));
        self.buf
    }

    fn header(&mut self, path: &str, mode: u32, size: u64, kind: u8) {
        assert!(
            path.len() < 100,
            "tar path too long for this writer: {path}"
        );
        let mut h = [0u8; 512];
        fn put(h: &mut [u8; 512], at: usize, s: &[u8]) {
            h[at..at + s.len()].copy_from_slice(s);
        }
        put(&mut h, 0, path.as_bytes());
        put(&mut h, 100, format!("{mode:07o}\0").as_bytes());
        put(&mut h, 108, b"0000000\0"); // uid
        put(&mut h, 116, b"0000000\0"); // gid
        put(&mut h, 124, format!("{size:011o}\0").as_bytes());
        put(
            &mut h,
            136,
            format!("{:011o}\0", 1_700_000_000u64).as_bytes(),
        ); // mtime
        put(&mut h, 148, b"        "); // checksum placeholder
        h[156] = kind;
        put(&mut h, 257, b"ustar\0");
        put(&mut h, 263, b"00");
        put(&mut h, 265, b"root");
        put(&mut h, 297, b"root");
        let sum: u32 = h.iter().map(|&b| b as u32).sum();
        put(&mut h, 148, format!("{sum:06o}\0 ").as_bytes());
        self.buf.extend_from_slice(&h);
    }
}

fn crc32(data: &[u8]) -> u32 {
    let mut table = [0u32; 256];
    for (i, slot) in table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *slot = c;
    }
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc = table[((crc ^ b as u32) & 0xFF) as usize] ^ (crc >> 8);
    }
    crc ^ 0xFFFF_FFFF
}

/// A gzip member whose deflate stream is made of stored blocks.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    let mut chunks = data.chunks(65_535).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        out.push(if chunks.peek().is_none() { 1 } else { 0 });
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// One layer blob and what an image config says about it.
#[derive(Clone)]
pub struct Layer {
    pub media_type: &'static str,
    pub bytes: Vec<u8>,
    /// Digest of the uncompressed tar (the config's `rootfs.diff_ids`).
    pub diff_id: String,
}

impl Layer {
    pub fn tar(tar: Vec<u8>) -> Layer {
        Layer {
            media_type: OCI_LAYER_TAR,
            diff_id: sha256_digest(&tar),
            bytes: tar,
        }
    }

    pub fn tar_gz(tar: Vec<u8>) -> Layer {
        Layer {
            media_type: OCI_LAYER_TAR_GZIP,
            diff_id: sha256_digest(&tar),
            bytes: gzip(&tar),
        }
    }
}

/// A manifest (image or index) written into a layout.
#[derive(Clone, Debug)]
pub struct Written {
    pub media_type: &'static str,
    pub digest: String,
    pub bytes: Vec<u8>,
    /// Every blob this manifest needs (config and layers for an image; the
    /// child manifests and their blobs for an index), as digests.
    pub blobs: Vec<String>,
    pub platform: Option<(String, String)>,
}

impl Written {
    pub fn descriptor(&self) -> Value {
        let mut d = json!({
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.bytes.len(),
        });
        if let Some((os, arch)) = &self.platform {
            d["platform"] = json!({ "os": os, "architecture": arch });
        }
        d
    }
}

/// An OCI image layout directory being written.
pub struct Layout {
    pub root: PathBuf,
    refs: Vec<Value>,
}

impl Layout {
    pub fn create(root: &Path) -> Layout {
        std::fs::create_dir_all(root.join("blobs/sha256")).unwrap();
        std::fs::write(
            root.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        let layout = Layout {
            root: root.to_owned(),
            refs: Vec::new(),
        };
        layout.write_index();
        layout
    }

    pub fn add_blob(&self, data: &[u8]) -> String {
        let hex = sha256_hex(data);
        std::fs::write(self.root.join("blobs/sha256").join(&hex), data).unwrap();
        format!("sha256:{hex}")
    }

    /// Writes config, layers and the image manifest (untagged).
    pub fn add_image(&self, os: &str, arch: &str, layers: &[Layer]) -> Written {
        let config = json!({
            "config": { "Cmd": ["/bin/true"], "Env": ["PATH=/bin"] },
            "history": layers.iter().map(|_| json!({"created_by": "registry integration test"})).collect::<Vec<_>>(),
        });
        self.add_image_with_config(os, arch, config, layers)
    }

    /// Like `add_image`, with the config's other fields (`config`,
    /// `history`, `author`...) from `config`; `created`, `os`,
    /// `architecture` and `rootfs` are filled in unless given.
    pub fn add_image_with_config(
        &self,
        os: &str,
        arch: &str,
        mut config: Value,
        layers: &[Layer],
    ) -> Written {
        let defaults = json!({
            "created": "2024-01-01T00:00:00Z",
            "architecture": arch,
            "os": os,
            "rootfs": {
                "type": "layers",
                "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
            },
        });
        for (k, v) in defaults.as_object().unwrap() {
            config
                .as_object_mut()
                .unwrap()
                .entry(k.clone())
                .or_insert(v.clone());
        }
        let config = serde_json::to_vec(&config).unwrap();
        let config_digest = self.add_blob(&config);
        let mut blobs = vec![config_digest.clone()];
        let mut descs = Vec::new();
        for l in layers {
            let d = self.add_blob(&l.bytes);
            descs.push(json!({ "mediaType": l.media_type, "digest": d, "size": l.bytes.len() }));
            blobs.push(d);
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": { "mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len() },
            "layers": descs,
            "annotations": { "org.opencontainers.image.title": "registry-test" },
        });
        let bytes = serde_json::to_vec_pretty(&manifest).unwrap();
        let digest = self.add_blob(&bytes);
        Written {
            media_type: OCI_MANIFEST,
            digest,
            bytes,
            blobs,
            platform: Some((os.into(), arch.into())),
        }
    }

    /// Writes an image index over the given manifests (untagged).
    pub fn add_index(&self, manifests: &[&Written]) -> Written {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": manifests.iter().map(|m| m.descriptor()).collect::<Vec<_>>(),
        });
        let bytes = serde_json::to_vec_pretty(&index).unwrap();
        let digest = self.add_blob(&bytes);
        let mut blobs = Vec::new();
        for m in manifests {
            blobs.push(m.digest.clone());
            blobs.extend(m.blobs.iter().cloned());
        }
        Written {
            media_type: OCI_INDEX,
            digest,
            bytes,
            blobs,
            platform: None,
        }
    }

    /// Names a manifest in `index.json` (`oci:DIR:tag`).
    pub fn tag(&mut self, tag: &str, m: &Written) {
        let mut d = m.descriptor();
        d.as_object_mut().unwrap().remove("platform");
        d["annotations"] = json!({ REF_NAME: tag });
        self.refs.push(d);
        self.write_index();
    }

    fn write_index(&self) {
        let index = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.refs });
        std::fs::write(
            self.root.join("index.json"),
            serde_json::to_vec_pretty(&index).unwrap(),
        )
        .unwrap();
    }
}

/// The descriptor `index.json` of a layout gives for `tag`.
pub fn read_ref(root: &Path, tag: &str) -> Value {
    let index: Value =
        serde_json::from_slice(&std::fs::read(root.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["annotations"][REF_NAME] == tag)
        .unwrap_or_else(|| panic!("no ref {tag} in {}: {index}", root.display()))
        .clone()
}

/// A blob of a layout by digest (`sha256:...`).
pub fn read_blob(root: &Path, digest: &str) -> Vec<u8> {
    let (alg, hex) = digest.split_once(':').unwrap();
    let path = root.join("blobs").join(alg).join(hex);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
