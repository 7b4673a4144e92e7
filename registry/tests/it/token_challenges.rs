//! A client that learns scopes only from challenges (as containerd, crane
//! and oras do) walks pull → push → delete on one repository, against
//! Debian's docker-registry (registry:2) and against ours, with an external
//! issuer and with the built-in endpoint. Every status, error code and
//! challenge (`error`, `scope`) must be the same: a token that lacks an
//! action gets 401 `insufficient_scope` naming the scope to ask for, and the
//! client comes back with a wider token.

use crate::support;
use crate::support::distribution;

use distribution::DockerRegistry;
use registry::config::{AuthMode, Config};
use support::token_issuer::{parse_challenge, Policy, TokenIssuer};
use support::{sha256_digest, TestServer};

const REPO: &str = "team/app";
const USER: &str = "dev";
const PASSWORD: &str = "devpw";

/// What the client saw of one response.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    status: u16,
    code: Option<String>,
    /// The challenge's `error` and `scope`, when it has them.
    error: Option<String>,
    scope: Option<String>,
}

/// `repository:x:push,pull` → `repository:x:pull,push`: registry:2 keeps
/// a scope's actions in a Go map, so their order varies from run to run.
fn sorted_actions(scope: &str) -> String {
    scope
        .split(' ')
        .map(|one| match one.rsplit_once(':') {
            Some((resource, actions)) => {
                let mut a: Vec<&str> = actions.split(',').collect();
                a.sort_unstable();
                format!("{resource}:{}", a.join(","))
            }
            None => one.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A client that holds one token at a time and widens it only when a
/// challenge tells it what to ask for.
struct Agent {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    /// Every response seen, per step.
    trace: Vec<(&'static str, Vec<Seen>)>,
}

struct Request {
    method: reqwest::Method,
    url: String,
    body: Option<(Vec<u8>, &'static str)>,
}

impl Agent {
    fn new(base: &str) -> Agent {
        Agent {
            http: reqwest::Client::new(),
            base: base.to_owned(),
            token: None,
            trace: Vec::new(),
        }
    }

    fn url(&self, location: &str) -> String {
        if location.starts_with("http") {
            location.to_owned()
        } else {
            format!("{}{location}", self.base)
        }
    }

    async fn send_once(&self, req: &Request) -> reqwest::Response {
        let mut r = self.http.request(req.method.clone(), &req.url);
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        // registry:2 serves an OCI manifest only to a client that accepts it.
        if req.method == reqwest::Method::GET {
            r = r.header("accept", "application/vnd.oci.image.manifest.v1+json");
        }
        if let Some((body, content_type)) = &req.body {
            r = r.header("content-type", *content_type).body(body.clone());
        }
        r.send().await.unwrap()
    }

    /// Sends; on a Bearer challenge gets a token for its scope and sends
    /// once more. Returns the last response's headers and body.
    async fn step(
        &mut self,
        name: &'static str,
        req: Request,
    ) -> (reqwest::header::HeaderMap, Vec<u8>) {
        let mut seen = Vec::new();
        let mut retried = false;
        loop {
            let r = self.send_once(&req).await;
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            let body = r.bytes().await.unwrap().to_vec();
            let code = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["errors"][0]["code"].as_str().map(str::to_owned));
            let c = headers
                .get("www-authenticate")
                .map(|v| parse_challenge(v.to_str().unwrap()))
                .unwrap_or_default();
            seen.push(Seen {
                status,
                code,
                error: c.get("error").cloned(),
                scope: c.get("scope").map(|s| sorted_actions(s)),
            });
            if status != 401 || retried || !c.contains_key("realm") {
                self.trace.push((name, seen));
                return (headers, body);
            }
            retried = true;
            let mut url = format!("{}?service={}", c["realm"], c["service"]);
            if let Some(scope) = c.get("scope") {
                for s in scope.split(' ') {
                    url.push_str(&format!("&scope={s}"));
                }
            }
            let t = self
                .http
                .get(url)
                .basic_auth(USER, Some(PASSWORD))
                .send()
                .await
                .unwrap();
            assert_eq!(t.status(), 200, "{name}: token endpoint");
            let t: serde_json::Value = t.json().await.unwrap();
            self.token = Some(t["token"].as_str().unwrap().to_owned());
        }
    }

    fn get(&self, path: &str) -> Request {
        Request {
            method: reqwest::Method::GET,
            url: self.url(path),
            body: None,
        }
    }
}

/// POST a session, PUT the blob into it: the two steps named `steps`.
async fn push_blob(a: &mut Agent, steps: (&'static str, &'static str), data: &[u8]) -> String {
    let digest = sha256_digest(data);
    let (headers, _) = a
        .step(
            steps.0,
            Request {
                method: reqwest::Method::POST,
                url: a.url(&format!("/v2/{REPO}/blobs/uploads/")),
                body: None,
            },
        )
        .await;
    let location = headers["location"].to_str().unwrap().to_owned();
    let sep = if location.contains('?') { '&' } else { '?' };
    a.step(
        steps.1,
        Request {
            method: reqwest::Method::PUT,
            url: a.url(&format!("{location}{sep}digest={digest}")),
            body: Some((data.to_vec(), "application/octet-stream")),
        },
    )
    .await;
    digest
}

/// Pull (nothing there), push two blobs by sessions,
/// push the manifest, pull it, delete it (not allowed), list tags.
async fn walk(base: &str) -> Vec<(&'static str, Vec<Seen>)> {
    let mut a = Agent::new(base);
    a.step(
        "pull a missing tag",
        a.get(&format!("/v2/{REPO}/manifests/v1")),
    )
    .await;
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = push_blob(&mut a, ("start an upload", "finish the upload"), config).await;
    // registry:2 (2.8) has no monolithic POST: a second session, as docker
    // pushes each layer.
    let layer = b"a layer";
    let layer_digest = push_blob(&mut a, ("start another upload", "finish it"), layer).await;
    let manifest = support::image_manifest(
        &config_digest,
        config.len(),
        &[(&layer_digest, layer.len())],
    );
    let manifest_digest = sha256_digest(&manifest);
    a.step(
        "push the manifest",
        Request {
            method: reqwest::Method::PUT,
            url: a.url(&format!("/v2/{REPO}/manifests/v1")),
            body: Some((manifest, "application/vnd.oci.image.manifest.v1+json")),
        },
    )
    .await;
    a.step("pull it", a.get(&format!("/v2/{REPO}/manifests/v1")))
        .await;
    a.step(
        "delete it (not granted)",
        Request {
            method: reqwest::Method::DELETE,
            url: a.url(&format!("/v2/{REPO}/manifests/{manifest_digest}")),
            body: None,
        },
    )
    .await;
    a.step("list tags", a.get(&format!("/v2/{REPO}/tags/list")))
        .await;
    a.trace
}

fn policy() -> Policy {
    let mut p = Policy::new();
    p.insert(USER, (PASSWORD, vec![(REPO, vec!["pull", "push"])]));
    p
}

fn seen(status: u16, code: Option<&str>, error: Option<&str>, scope: Option<&str>) -> Seen {
    Seen {
        status,
        code: code.map(str::to_owned),
        error: error.map(str::to_owned),
        scope: scope.map(str::to_owned),
    }
}

#[tokio::test]
async fn challenges_widen_tokens_as_registry_2_does() {
    let issuer = TokenIssuer::start("test-issuer", "registry-test", policy()).await;
    let root = tempfile::tempdir().unwrap();
    let stock = DockerRegistry::start_token(
        root.path(),
        &issuer.realm,
        &issuer.service,
        &issuer.issuer,
        &issuer.cert,
    )
    .await;
    let theirs = walk(&stock.base).await;

    let env = [
        ("REGISTRY_AUTH", "token".to_owned()),
        ("REGISTRY_AUTH_TOKEN_REALM", issuer.realm.clone()),
        ("REGISTRY_AUTH_TOKEN_SERVICE", issuer.service.clone()),
        ("REGISTRY_AUTH_TOKEN_ISSUER", issuer.issuer.clone()),
        (
            "REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE",
            issuer.cert.to_str().unwrap().to_owned(),
        ),
    ];
    let external = TestServer::start_with(move |c| {
        let mut loaded =
            Config::load(None, env.iter().map(|(k, v)| (k.to_string(), v.clone()))).unwrap();
        loaded.http = c.http.clone();
        loaded.storage = c.storage.clone();
        loaded.auth.htpasswd = c.auth.htpasswd.clone();
        *c = loaded;
    })
    .await;
    assert_eq!(external.config.auth.mode, AuthMode::Token);
    let ours_external = walk(&external.base).await;

    let builtin = TestServer::start_with(|c| {
        std::fs::write(
            &c.auth.htpasswd.path,
            format!("{USER}:{}\n", htpasswd::hash_bcrypt(PASSWORD, 4).unwrap()),
        )
        .unwrap();
        c.auth.mode = AuthMode::Token;
        c.auth.token.signing_key = c.auth.htpasswd.path.with_file_name("signing-key.pem");
        c.acl = Some(
            toml::from_str(&format!(
                "[[rules]]\nrepository = \"{REPO}\"\npull = [\"{USER}\"]\npush = [\"{USER}\"]\n"
            ))
            .unwrap(),
        );
    })
    .await;
    let ours_builtin = walk(&builtin.base).await;

    // What registry:2 answers, spelled out: the first request of each new
    // action is challenged with the scope to ask for; a token that does not
    // cover it is `insufficient_scope` (401), never 403.
    let pull = "repository:team/app:pull";
    let push = "repository:team/app:pull,push";
    let delete = "repository:team/app:delete";
    let unauthorized = Some("UNAUTHORIZED");
    let insufficient = Some("insufficient_scope");
    let expected = vec![
        (
            "pull a missing tag",
            vec![
                seen(401, unauthorized, None, Some(pull)),
                seen(404, Some("MANIFEST_UNKNOWN"), None, None),
            ],
        ),
        (
            "start an upload",
            vec![
                seen(401, unauthorized, insufficient, Some(push)),
                seen(202, None, None, None),
            ],
        ),
        ("finish the upload", vec![seen(201, None, None, None)]),
        ("start another upload", vec![seen(202, None, None, None)]),
        ("finish it", vec![seen(201, None, None, None)]),
        ("push the manifest", vec![seen(201, None, None, None)]),
        ("pull it", vec![seen(200, None, None, None)]),
        (
            "delete it (not granted)",
            vec![
                seen(401, unauthorized, insufficient, Some(delete)),
                seen(401, unauthorized, insufficient, Some(delete)),
            ],
        ),
        // The delete token replaced the push token: pull again.
        (
            "list tags",
            vec![
                seen(401, unauthorized, insufficient, Some(pull)),
                seen(200, None, None, None),
            ],
        ),
    ];
    assert_eq!(theirs, expected, "docker-registry");
    assert_eq!(
        ours_external, theirs,
        "ours, external issuer, vs docker-registry"
    );
    assert_eq!(
        ours_builtin, theirs,
        "ours, built-in endpoint, vs docker-registry"
    );
}
