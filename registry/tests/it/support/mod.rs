//! Starts the real registry in process on an ephemeral port, with its own
//! temporary storage and htpasswd file.

pub mod alone;
pub mod distribution;
pub mod oci_layout;
pub mod registry_bin;
pub mod s3;
pub mod skopeo;
pub mod token_issuer;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use registry::config::Config;
use registry::server::Running;

pub const USER: &str = "alice";
pub const PASSWORD: &str = "secret";

pub struct TestServer {
    pub addr: SocketAddr,
    pub base: String,
    pub config: Config,
    running: Option<Running>,
    dir: tempfile::TempDir,
    /// The S3 server behind this registry in REGISTRY_TEST_STORAGE=s3 runs.
    moto: Option<s3::Moto>,
}

/// Whether this run puts every TestServer on S3 (moto) instead of disk:
/// `REGISTRY_TEST_STORAGE=s3 cargo test -p registry --test conformance_push`.
pub fn storage_is_s3() -> bool {
    std::env::var("REGISTRY_TEST_STORAGE").as_deref() == Ok("s3")
}

impl TestServer {
    /// htpasswd auth (alice/secret, bcrypt cost 4 to keep tests fast),
    /// deletes enabled, storage in a fresh temp dir.
    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        // `REGISTRY_TEST_LOG=warn` (any filter): the servers' logs on the
        // test's output, e.g. the cause behind a 5xx's request id.
        if let Ok(filter) = std::env::var("REGISTRY_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let htpasswd = write_htpasswd(dir.path());
        let mut config = Config::default();
        config.http.addr = "127.0.0.1:0".into();
        config.storage.filesystem.rootdirectory = dir.path().join("storage");
        config.storage.filesystem.fsync = false;
        config.storage.delete_enabled = true;
        config.auth.htpasswd.path = htpasswd;
        let moto = if storage_is_s3() {
            let moto = s3::Moto::start().await;
            moto.create_bucket("registry-test").await;
            moto.configure(&mut config, "registry-test");
            Some(moto)
        } else {
            None
        };
        adjust(&mut config);
        let mut server = TestServer::start_config(config, dir).await;
        server.moto = moto;
        server
    }

    /// Starts on an existing config and directory (e.g. to restart on the
    /// same storage).
    pub async fn start_config(config: Config, dir: tempfile::TempDir) -> TestServer {
        let running = registry::server::start(&config)
            .await
            .expect("registry starts");
        let addr = running.addr;
        TestServer {
            addr,
            base: format!("http://{addr}"),
            config,
            running: Some(running),
            dir,
            moto: None,
        }
    }

    /// Stops this server and starts a new one on the same storage and port
    /// range (a fresh ephemeral port).
    pub async fn restart(mut self) -> TestServer {
        self.running
            .take()
            .unwrap()
            .shutdown(Duration::from_secs(5))
            .await
            .unwrap();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        let moto = self.moto.take();
        let mut server = TestServer::start_config(self.config.clone(), dir).await;
        server.moto = moto;
        server
    }

    /// A second replica: another server on this one's storage (the same
    /// directory or bucket) and config, with its own port. It must stop
    /// before this one (which owns the storage).
    pub async fn start_replica(&self) -> TestServer {
        TestServer::start_config(self.config.clone(), tempfile::tempdir().unwrap()).await
    }

    /// Where `/metrics` is served, when `[metrics] addr` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.running.as_ref()?.metrics_addr
    }

    /// The whole `/metrics` exposition (`[metrics] addr` must be set).
    pub async fn metrics_text(&self) -> String {
        let addr = self.metrics_addr().expect("metrics listener");
        reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn storage_root(&self) -> PathBuf {
        self.config.storage.filesystem.rootdirectory.clone()
    }

    /// Every object the store holds, by key under the storage root, sorted:
    /// on disk the files under the root directory, on S3 the bucket's keys.
    /// What "refused input stored nothing" is checked against, on either
    /// backend (a snapshot of a local folder says nothing on S3).
    pub async fn stored(&self) -> Vec<String> {
        match &self.moto {
            Some(moto) => moto.keys(&self.config.storage.s3.bucket, "").await,
            None => storage_files(&self.storage_root()),
        }
    }

    /// Writes `key` (under the storage root) straight into the store, past
    /// the registry: the state a crash or another writer leaves, on either
    /// backend.
    pub async fn plant(&self, key: &str, body: &[u8]) {
        match &self.moto {
            Some(moto) => {
                moto.put(&self.config.storage.s3.bucket, key, body.to_vec())
                    .await
            }
            None => {
                let path = self.storage_root().join(key);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, body).unwrap();
            }
        }
    }

    /// Refused input must leave the store exactly as it was.
    pub async fn assert_stored_unchanged(&self, before: &[String], what: &str) {
        let after = self.stored().await;
        let (added, removed) = storage_diff(before, &after);
        assert!(
            added.is_empty() && removed.is_empty(),
            "{what}: storage changed; added {added:?}, removed {removed:?}"
        );
    }

    /// The store may differ only by objects of the upload session
    /// `upload_id` (one the test itself opened, under
    /// `<name>/_uploads/<id>/`).
    pub async fn assert_only_upload_session_changed(
        &self,
        before: &[String],
        upload_id: &str,
        what: &str,
    ) {
        let after = self.stored().await;
        let (added, removed) = storage_diff(before, &after);
        let marker = format!("/_uploads/{upload_id}/");
        let foreign: Vec<_> = added
            .iter()
            .chain(removed.iter())
            .filter(|f| !f.contains(&marker))
            .collect();
        assert!(
            foreign.is_empty(),
            "{what}: storage changed outside upload session {upload_id}: {foreign:?}"
        );
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A client that sends alice's credentials on every request.
    pub fn client(&self) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: self.base.clone(),
            auth: Some((USER.into(), PASSWORD.into())),
        }
    }

    pub fn anonymous(&self) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: self.base.clone(),
            auth: None,
        }
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown(Duration::from_secs(5)).await.unwrap();
        }
    }
}

pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub auth: Option<(String, String)>,
}

impl Client {
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{}", self.base, path)
        };
        let b = self.http.request(method, url);
        match &self.auth {
            Some((u, p)) => b.basic_auth(u, Some(p)),
            None => b,
        }
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::GET, path)
    }
    pub fn head(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::HEAD, path)
    }
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::POST, path)
    }
    pub fn put(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::PUT, path)
    }
    pub fn patch(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::PATCH, path)
    }
    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::DELETE, path)
    }

    /// Pushes a blob monolithically; returns its digest string.
    pub async fn push_blob(&self, name: &str, data: &[u8]) -> String {
        match self.try_push_blob(name, data).await {
            Ok(digest) => digest,
            Err(r) => panic!("push blob: {} {}", r.status(), r.text().await.unwrap()),
        }
    }

    /// Pushes a blob monolithically: its digest, or the refusal.
    pub async fn try_push_blob(
        &self,
        name: &str,
        data: &[u8],
    ) -> Result<String, reqwest::Response> {
        let digest = sha256_digest(data);
        let r = self
            .post(&format!("/v2/{name}/blobs/uploads/?digest={digest}"))
            .header("content-type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        if r.status() == 201 {
            Ok(digest)
        } else {
            Err(r)
        }
    }

    /// `try_push_blob` under load where a refusal is allowed: the digest,
    /// or None for a 4xx with the spec's error body. A 5xx (or a reset,
    /// which `send` unwraps) is a failure, never a refusal.
    pub async fn push_blob_or_refusal(&self, name: &str, data: &[u8]) -> Option<String> {
        match self.try_push_blob(name, data).await {
            Ok(digest) => Some(digest),
            Err(r) => {
                allowed_refusal(r).await;
                None
            }
        }
    }

    /// Pushes an OCI image manifest with a config and the given layers
    /// (all pushed first); returns (manifest digest, manifest bytes).
    pub async fn push_image(
        &self,
        name: &str,
        reference: &str,
        layers: &[&[u8]],
    ) -> (String, Vec<u8>) {
        let config = format!(
            "{{\"architecture\":\"amd64\",\"os\":\"linux\",\"n\":{}}}",
            layers.len()
        );
        let config_digest = self.push_blob(name, config.as_bytes()).await;
        let mut layer_descs = Vec::new();
        for layer in layers {
            let d = self.push_blob(name, layer).await;
            layer_descs.push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": d,
                "size": layer.len(),
            }));
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config.len(),
            },
            "layers": layer_descs,
        });
        let bytes = serde_json::to_vec(&manifest).unwrap();
        let digest = self
            .push_manifest(
                name,
                reference,
                "application/vnd.oci.image.manifest.v1+json",
                &bytes,
            )
            .await;
        (digest, bytes)
    }

    /// `GET /v2/<name>/tags/list`'s tags (in the server's order: lexical).
    pub async fn tag_list(&self, name: &str) -> Vec<String> {
        let r = self
            .get(&format!("/v2/{name}/tags/list"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "tags of {name}");
        let v: serde_json::Value = r.json().await.unwrap();
        v["tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub async fn push_manifest(
        &self,
        name: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> String {
        let r = self
            .put(&format!("/v2/{name}/manifests/{reference}"))
            .header("content-type", media_type)
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            201,
            "push manifest: {}",
            r.text().await.unwrap()
        );
        r.headers()["docker-content-digest"]
            .to_str()
            .unwrap()
            .to_owned()
    }
}

/// `registry gc --delete-untagged` on `s`'s storage, no grace period.
pub async fn gc_untagged(s: &TestServer) {
    let storage = registry::storage::backend::open(&s.config.storage).unwrap();
    let options = registry::storage::maintenance::gc::Options {
        dry_run: false,
        delete_untagged: true,
        grace: std::time::Duration::ZERO,
        upload_max_age: None,
        untagged_after: Vec::new(),
    };
    registry::storage::maintenance::gc::run(&storage, &options, None)
        .await
        .unwrap();
}

/// Waits for the next wall-clock second: S3 keeps last-modified times in
/// whole seconds, so pushes that must be ordered by time go a second apart.
pub async fn next_second() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let rest = std::time::Duration::from_secs(1)
        - std::time::Duration::from_nanos(now.subsec_nanos() as u64);
    tokio::time::sleep(rest + std::time::Duration::from_millis(5)).await;
}

/// A port free on 127.0.0.1 when asked (for a server started next that
/// must be told its port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `dir/htpasswd` holding the test user (bcrypt at the lowest cost, fast).
pub fn write_htpasswd(dir: &Path) -> PathBuf {
    let path = dir.join("htpasswd");
    std::fs::write(
        &path,
        format!("{USER}:{}\n", htpasswd::hash_bcrypt(PASSWORD, 4).unwrap()),
    )
    .unwrap();
    path
}

pub fn sha256_digest(data: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// The error code of a spec error body.
pub async fn error_code(r: reqwest::Response) -> String {
    let body: serde_json::Value = r.json().await.expect("error body is JSON");
    body["errors"][0]["code"]
        .as_str()
        .expect("errors[0].code")
        .to_owned()
}

/// Where the filesystem backend keeps the blob `digest` (sha256) under
/// the storage root `root`.
pub fn blob_file(root: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap();
    root.join(format!(
        "docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ))
}

/// `r` serves the content `digest` (a manifest or a blob): 200, its
/// `Docker-Content-Digest`, and exactly `bytes`.
pub async fn assert_served(r: reqwest::Response, digest: &str, bytes: &[u8]) {
    let url = r.url().clone();
    assert_eq!(r.status(), 200, "{url}");
    assert_eq!(
        r.headers()["docker-content-digest"].to_str().unwrap(),
        digest,
        "{url}"
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), bytes, "{url}");
}

/// The status of the request `r`, sent.
pub async fn status(r: reqwest::RequestBuilder) -> u16 {
    r.send().await.unwrap().status().as_u16()
}

/// The value of `series` (a metric's name with its labels, exactly) in a
/// `/metrics` exposition `text`, or None when no line has it.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The sum of every series in `text` whose line starts with `prefix`
/// (e.g. `name{` for all of a counter's label sets).
pub fn sum_samples(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

/// Every file under the storage root, relative, sorted: to assert that
/// refused input left storage unchanged.
pub fn storage_files(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, root, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// The error codes a 4xx JSON body may carry: the OCI Distribution Spec
/// v1.1 table ("The `code` field MUST be one of the following"), plus the
/// legacy Docker codes the spec says clients MAY encounter.
pub const SPEC_ERROR_CODES: [&str; 16] = [
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
    "TOOMANYREQUESTS",
    "TAG_INVALID",
    "MANIFEST_UNVERIFIED",
];

/// The whole error body, checked for the spec's shape:
/// `{"errors":[{"code","message",("detail")}]}` with a code from the table.
pub async fn error_body(r: reqwest::Response) -> serde_json::Value {
    let status = r.status();
    let text = r.text().await.expect("error body");
    let body: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{status}: error body is not JSON ({e}): {text:?}"));
    check_error_shape(&body);
    body
}

pub fn check_error_shape(body: &serde_json::Value) {
    let errors = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors array: {body}"));
    assert!(!errors.is_empty(), "empty errors array: {body}");
    for e in errors {
        let code = e["code"]
            .as_str()
            .unwrap_or_else(|| panic!("error without code: {body}"));
        assert!(
            code.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
            "code {code:?} must be upper case letters and underscores"
        );
        if let Some(m) = e.get("message") {
            assert!(m.is_string(), "message must be a string: {body}");
        }
    }
}

/// The response is a `status` error whose JSON body's code is one from the
/// spec's table ("The `code` field MUST be one of the following"); the
/// code. `what` names the request in a failure.
pub async fn expect_spec_error(r: reqwest::Response, status: u16, what: &str) -> String {
    assert_eq!(r.status(), status, "{what}");
    let body = error_body(r).await;
    let code = body["errors"][0]["code"].as_str().unwrap().to_owned();
    assert!(
        SPEC_ERROR_CODES.contains(&code.as_str()),
        "{what}: code {code} is not in the spec's table"
    );
    code
}

/// Asserts a 4xx status and a spec error body; returns the first code.
pub async fn expect_error(r: reqwest::Response, status: u16) -> String {
    let got = r.status().as_u16();
    let url = r.url().clone();
    let body = error_body(r).await;
    assert_eq!(got, status, "{url}: status; body {body}");
    body["errors"][0]["code"].as_str().unwrap().to_owned()
}

/// Files that appeared or disappeared between two `storage_files` calls.
pub fn storage_diff(before: &[String], after: &[String]) -> (Vec<String>, Vec<String>) {
    let added = after
        .iter()
        .filter(|f| !before.contains(f))
        .cloned()
        .collect();
    let removed = before
        .iter()
        .filter(|f| !after.contains(f))
        .cloned()
        .collect();
    (added, removed)
}

/// A refusal a load test allows: a 4xx with the spec's error body. A 5xx
/// or anything else fails the test (a refusal is the client's to fix; a
/// 5xx is ours).
pub async fn allowed_refusal(r: reqwest::Response) {
    let status = r.status();
    let url = r.url().clone();
    assert!(
        status.is_client_error(),
        "{url}: {status} is a failure, not a refusal: {}",
        r.text().await.unwrap_or_default()
    );
    error_body(r).await;
}

/// The upload id at the end of an upload `Location`.
pub fn upload_id(location: &str) -> String {
    location
        .split('?')
        .next()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned()
}

impl Client {
    /// Opens an upload session; returns its `Location`.
    pub async fn start_upload(&self, name: &str) -> String {
        let r = self
            .post(&format!("/v2/{name}/blobs/uploads/"))
            .header("content-length", "0")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "start upload: {}", r.text().await.unwrap());
        r.headers()["location"].to_str().unwrap().to_owned()
    }

    /// The JSON body of `GET path` (whatever the status).
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        self.get(path).send().await.unwrap().json().await.unwrap()
    }

    /// GET with an Accept header listing every manifest type we serve.
    pub fn get_manifest(&self, name: &str, reference: &str) -> reqwest::RequestBuilder {
        self.get(&format!("/v2/{name}/manifests/{reference}"))
            .header("accept", ALL_MANIFEST_TYPES)
    }
}

pub fn join_query(location: &str, query: &str) -> String {
    if location.contains('?') {
        format!("{location}&{query}")
    } else {
        format!("{location}?{query}")
    }
}

/// How a blob goes up: the ways docker and other clients push.
#[derive(Clone, Copy)]
pub enum Upload {
    /// POST, one PATCH with the whole body, PUT ?digest= (docker push).
    Streamed,
    /// POST, then PATCHes of at most this many bytes with Content-Range, PUT.
    Chunked(usize),
    /// POST, then PUT ?digest= with the whole body.
    PostPut,
}

impl Client {
    /// Pushes a blob the way Distribution 2.8 accepts (no single-POST upload):
    /// `how` says which; asserts each step and the digest the PUT answers.
    pub async fn push_blob_by(&self, repo: &str, data: &[u8], how: Upload) -> String {
        let digest = sha256_digest(data);
        let r = self
            .post(&format!("/v2/{repo}/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "POST upload: {}", r.text().await.unwrap());
        let mut location = r.headers()["location"].to_str().unwrap().to_owned();
        match how {
            Upload::PostPut => {}
            Upload::Streamed | Upload::Chunked(_) => {
                let size = match how {
                    Upload::Chunked(n) => n,
                    _ => data.len().max(1),
                };
                let mut start = 0;
                for chunk in data.chunks(size) {
                    let end = start + chunk.len() - 1;
                    let r = self
                        .patch(&location)
                        .header("content-type", "application/octet-stream")
                        .header("content-range", format!("{start}-{end}"))
                        .body(chunk.to_vec())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(
                        r.status(),
                        202,
                        "PATCH {start}-{end}: {}",
                        r.text().await.unwrap()
                    );
                    assert_eq!(r.headers()["range"].to_str().unwrap(), format!("0-{end}"));
                    location = r.headers()["location"].to_str().unwrap().to_owned();
                    start = end + 1;
                }
            }
        }
        let body = match how {
            Upload::PostPut => data.to_vec(),
            _ => Vec::new(),
        };
        let r = self
            .put(&join_query(&location, &format!("digest={digest}")))
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "PUT upload: {}", r.text().await.unwrap());
        assert_eq!(
            r.headers()["docker-content-digest"].to_str().unwrap(),
            digest
        );
        digest
    }
}

/// `sha512:<hex>` of `data`.
pub fn sha512_digest(data: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha512:{}", hex::encode(sha2::Sha512::digest(data)))
}

/// An OCI image manifest's bytes: the config's digest and size and the
/// `layers` `(digest, size)` (tar layers).
pub fn image_manifest(
    config_digest: &str,
    config_size: usize,
    layers: &[(&str, usize)],
) -> Vec<u8> {
    let layers: Vec<_> = layers
        .iter()
        .map(|(digest, size)| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": digest, "size": size,
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config_size},
        "layers": layers,
    }))
    .unwrap()
}

impl Client {
    /// Pushes a blob in one POST under its sha512 digest
    /// (`?digest-algorithm=sha512`); asserts the 201 and the digest it
    /// answers, and returns that digest.
    pub async fn push_blob_sha512(&self, name: &str, data: &[u8]) -> String {
        let d = sha512_digest(data);
        let r = self
            .post(&format!(
                "/v2/{name}/blobs/uploads/?digest-algorithm=sha512&digest={d}"
            ))
            .header("content-type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "sha512 push of a blob to {name}");
        assert_eq!(r.headers()["docker-content-digest"], d.as_str());
        d
    }

    /// A sha512 image: `config` and `layers` pushed under sha512 digests,
    /// the manifest PUT by its sha512 digest with a `?tag=` for each of
    /// `tags` (distribution-spec main). (manifest digest, layer digests).
    pub async fn push_sha512_image(
        &self,
        name: &str,
        config: &[u8],
        layers: &[&[u8]],
        tags: &[&str],
    ) -> (String, Vec<String>) {
        let config_digest = self.push_blob_sha512(name, config).await;
        let mut layer_digests = Vec::new();
        for l in layers {
            layer_digests.push(self.push_blob_sha512(name, l).await);
        }
        let sizes: Vec<_> = layer_digests
            .iter()
            .zip(layers)
            .map(|(d, l)| (d.as_str(), l.len()))
            .collect();
        let manifest = image_manifest(&config_digest, config.len(), &sizes);
        let digest = sha512_digest(&manifest);
        let query: Vec<_> = tags.iter().map(|t| format!("tag={t}")).collect();
        let q = if query.is_empty() {
            String::new()
        } else {
            format!("?{}", query.join("&"))
        };
        let r = self
            .put(&format!("/v2/{name}/manifests/{digest}{q}"))
            .header("content-type", OCI_MANIFEST)
            .body(manifest)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "sha512 image {name} tagged {tags:?}");
        (digest, layer_digests)
    }
}

impl Client {
    /// Pushes an artifact (empty config, one layer of `layer_type` holding
    /// `payload`, `artifact_type`) whose subject is the manifest
    /// `subject` `(digest, size)`, by its digest; returns that digest.
    pub async fn push_referrer(
        &self,
        name: &str,
        subject: (&str, usize),
        artifact_type: &str,
        layer_type: &str,
        payload: &[u8],
    ) -> String {
        let empty = self.push_blob(name, b"{}").await;
        let layer = self.push_blob(name, payload).await;
        let bytes = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [{"mediaType": layer_type, "digest": layer, "size": payload.len()}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject.0, "size": subject.1},
        }))
        .unwrap();
        let digest = sha256_digest(&bytes);
        self.push_manifest(name, &digest, OCI_MANIFEST, &bytes)
            .await
    }
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const ALL_MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// `Authorization` value for alice, for raw requests.
pub fn basic_auth_value() -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    )
}

#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{}: body is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The first error code of a spec error body (checked for shape).
    pub fn error_code(&self) -> String {
        let body = self.json();
        check_error_shape(&body);
        body["errors"][0]["code"].as_str().unwrap().to_owned()
    }
}

/// Sends `head` (request line and headers, without the blank line), then
/// `body`, over a plain TCP connection, untouched by any HTTP client (so paths
/// like `/v2/../x` reach the server as written). With `close_write`, the
/// write half is shut down after the body: a body shorter than its
/// `Content-Length` is then a truncated upload. Reads one response.
pub async fn raw_request(
    addr: SocketAddr,
    head: &str,
    body: &[u8],
    close_write: bool,
) -> RawResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut request = head
        .trim_end_matches(['\r', '\n'])
        .replace("\r\n", "\n")
        .replace('\n', "\r\n");
    request.push_str("\r\n\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    let run = async move {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut rd, mut wr) = stream.into_split();
        let (done, wait) = tokio::sync::oneshot::channel::<()>();
        // Written on its own task, errors ignored: a server refusing a large
        // body answers (and may close) before the client finished sending.
        tokio::spawn(async move {
            let _ = wr.write_all(&bytes).await;
            let _ = wr.flush().await;
            if close_write {
                let _ = wr.shutdown().await;
            }
            let _ = wait.await;
        });
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(resp) = parse_raw_response(&buf) {
                drop(done);
                return resp;
            }
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        drop(done);
        parse_raw_response(&buf).unwrap_or_else(|| {
            panic!(
                "no complete HTTP response: {:?}",
                String::from_utf8_lossy(&buf)
            )
        })
    };
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("raw request timed out")
}

/// Sends `head` and all of `body` before reading a byte, as a simple client
/// does (curl with a file, many scripts), then reads one response. An error
/// says what the client saw instead: a reset while writing or reading.
pub async fn raw_request_write_first(
    addr: SocketAddr,
    head: &str,
    body: &[u8],
) -> Result<RawResponse, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut request = head
        .trim_end_matches(['\r', '\n'])
        .replace("\r\n", "\n")
        .replace('\n', "\r\n");
    request.push_str("\r\n\r\n");
    let run = async move {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("writing the head: {e}"))?;
        stream
            .write_all(body)
            .await
            .map_err(|e| format!("writing the body: {e}"))?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(resp) = parse_raw_response(&buf) {
                return Ok(resp);
            }
            match stream.read(&mut chunk).await {
                Ok(0) => return Err(format!("closed after {} bytes", buf.len())),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(format!("reading the response: {e}")),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("raw request timed out")
}

fn parse_raw_response(buf: &[u8]) -> Option<RawResponse> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &buf[end + 4..];
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        decode_chunked(rest)?
    } else {
        let n = length.unwrap_or(0);
        if rest.len() < n {
            return None;
        }
        rest[..n].to_vec()
    };
    Some(RawResponse {
        status,
        headers,
        body,
    })
}

fn decode_chunked(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        if data.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Writes `users` (bcrypt cost 4) as the htpasswd file and sets `[acl]` from
/// `acl` (TOML): for `TestServer::start_with`.
pub fn users_and_acl(c: &mut Config, users: &[(&str, &str)], acl: &str) {
    let text: String = users
        .iter()
        .map(|(u, p)| format!("{u}:{}\n", htpasswd::hash_bcrypt(p, 4).unwrap()))
        .collect();
    std::fs::write(&c.auth.htpasswd.path, text).unwrap();
    c.acl = Some(toml::from_str(acl).unwrap());
}

/// A client sending `user`'s password from `users`.
pub fn client_as(s: &TestServer, users: &[(&str, &str)], user: &str) -> Client {
    let mut c = s.anonymous();
    let password = users.iter().find(|(u, _)| *u == user).unwrap().1;
    c.auth = Some((user.to_owned(), password.to_owned()));
    c
}

// ----- the web UI's form login, for tests that make raw requests -----

/// Posts the UI's login form as `user` (fetching the form first for its
/// cookie and CSRF token); the response is not followed.
pub async fn ui_login(base: &str, user: &str, password: &str) -> reqwest::Response {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http.get(format!("{base}/ui/login")).send().await.unwrap();
    let login_cookie = set_cookie(&r, "registry_login").unwrap();
    let page = r.text().await.unwrap();
    let csrf = hidden(&page, "csrf");
    http.post(format!("{base}/ui/login"))
        .header("cookie", format!("registry_login={login_cookie}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[
            ("csrf", csrf.as_str()),
            ("username", user),
            ("password", password),
            ("next", "/ui/"),
        ]))
        .send()
        .await
        .unwrap()
}

/// A UI session: the `Cookie` header value and its pages' CSRF token.
pub async fn ui_session(base: &str, user: &str, password: &str) -> (String, String) {
    let r = ui_login(base, user, password).await;
    assert_eq!(r.status(), 303, "login as {user}");
    let session = format!(
        "registry_session={}",
        set_cookie(&r, "registry_session").unwrap()
    );
    let page = ui_page(&format!("{base}/ui/"), &session).await;
    (session, hidden(&page, "csrf"))
}

/// The UI page at `url`, fetched with the session `cookie`.
pub async fn ui_page(url: &str, cookie: &str) -> String {
    reqwest::Client::new()
        .get(url)
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

pub fn form_body(fields: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(fields).unwrap()
}

/// The value a response sets cookie `name` to.
pub fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers().get_all("set-cookie").iter().find_map(|v| {
        let v = v.to_str().ok()?;
        let (pair, _) = v.split_once(';')?;
        let (k, value) = pair.split_once('=')?;
        (k == name).then(|| value.to_owned())
    })
}

/// The value of the hidden input `name` in a page.
pub fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {page}"))
        + marker.len();
    page[start..start + page[start..].find('"').unwrap()].to_owned()
}

/// The `href` of the element with id `id` in a page.
pub fn href_of(page: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\"");
    let at = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} in {page}"));
    let href = page[at..].find("href=\"").unwrap() + at + 6;
    page[href..href + page[href..].find('"').unwrap()].replace("&amp;", "&")
}
