//! Token mode (Docker registry token spec) end to end: the challenge →
//! token → retry flow, the OAuth2 POST flow with refresh tokens, scope
//! intersection, the ACL matrix, the catalog scope, forged tokens, external
//! issuers (rootcertbundle, x5c, RS256, EdDSA), key persistence and
//! rotation, brute-force throttling and the audit log.

use crate::support;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use registry::auth::der::{self, PublicKey};
use registry::config::{AuthMode, Config};
use serde_json::{json, Value};
use support::token_issuer::{issuer_cert, openssl, parse_challenge, private_der, spki_of_cert};
use support::{expect_error, sha256_digest, Client, TestServer, OCI_MANIFEST};

const USERS: &[(&str, &str)] = &[
    ("alice", "secret"),
    ("bob", "bobpw"),
    ("carol", "carolpw"),
    ("root", "rootpw"),
];

const ACL: &str = r#"
admins = ["root"]
catalog = ["carol"]
[groups]
team-a = ["alice", "carol"]
[[rules]]
repository = "team-a/**"
pull = ["@team-a"]
push = ["@team-a"]
delete = ["alice"]
[[rules]]
repository = "team-b/**"
pull = ["bob", "alice"]
push = ["bob"]
[[rules]]
repository = "public/**"
pull = ["*"]
push = ["alice"]
anonymous = ["pull"]
"#;

fn dir_of(c: &Config) -> PathBuf {
    c.auth.htpasswd.path.parent().unwrap().to_owned()
}

fn write_users(c: &Config) {
    let text: String = USERS
        .iter()
        .map(|(u, p)| format!("{u}:{}\n", htpasswd::hash_bcrypt(p, 4).unwrap()))
        .collect();
    std::fs::write(&c.auth.htpasswd.path, text).unwrap();
}

/// Token mode with the built-in endpoint, the test ACL, an audit log.
fn token_mode(c: &mut Config) {
    write_users(c);
    c.auth.mode = AuthMode::Token;
    let dir = dir_of(c);
    c.auth.token.signing_key = dir.join("keys/token-signing-key.pem");
    c.auth.audit_log = Some(dir.join("audit.jsonl"));
    c.acl = Some(toml::from_str(ACL).unwrap());
}

async fn start() -> TestServer {
    TestServer::start_with(token_mode).await
}

fn password_of(user: &str) -> &'static str {
    USERS.iter().find(|(u, _)| *u == user).unwrap().1
}

/// `GET /auth/token` as docker does it.
async fn token_response(s: &TestServer, user: Option<&str>, scopes: &[&str]) -> reqwest::Response {
    let mut url = format!("{}/auth/token?service=registry", s.base);
    for scope in scopes {
        url.push_str(&format!("&scope={}", scope.replace(' ', "%20")));
    }
    let mut r = reqwest::Client::new().get(url);
    if let Some(u) = user {
        r = r.basic_auth(u, Some(password_of(u)));
    }
    r.send().await.unwrap()
}

async fn token(s: &TestServer, user: Option<&str>, scopes: &[&str]) -> String {
    let r = token_response(s, user, scopes).await;
    assert_eq!(r.status(), 200, "token for {user:?} {scopes:?}");
    let body: Value = r.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

/// A client that sends `Authorization: Bearer <token>` on every request.
fn bearer(s: &TestServer, token: &str) -> Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    Client {
        http: reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .unwrap(),
        base: s.base.clone(),
        auth: None,
    }
}

fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

/// `Bearer realm="...",service="...",scope="..."` → its parameters.
fn challenge(r: &reqwest::Response) -> HashMap<String, String> {
    let h = r
        .headers()
        .get("www-authenticate")
        .unwrap_or_else(|| panic!("{}: no WWW-Authenticate", r.status()))
        .to_str()
        .unwrap();
    assert!(h.starts_with("Bearer "), "not a Bearer challenge: {h}");
    parse_challenge(h)
}

/// An `application/x-www-form-urlencoded` body, as OAuth2 clients send.
fn form<T: serde::Serialize + ?Sized>(
    r: reqwest::RequestBuilder,
    fields: &T,
) -> reqwest::RequestBuilder {
    r.header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(fields).unwrap())
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// What docker does for one request: try, and on a Bearer challenge get a
/// token for the challenge's scope from its realm, then retry.
async fn docker_request(
    s: &TestServer,
    user: Option<&str>,
    method: reqwest::Method,
    path: &str,
) -> reqwest::Response {
    let http = reqwest::Client::new();
    let r = http
        .request(method.clone(), format!("{}{path}", s.base))
        .send()
        .await
        .unwrap();
    if r.status() != 401 {
        return r;
    }
    let c = challenge(&r);
    let mut url = format!("{}?service={}", c["realm"], c["service"]);
    if let Some(scope) = c.get("scope") {
        url.push_str(&format!("&scope={scope}"));
    }
    let mut t = http.get(url);
    if let Some(u) = user {
        t = t.basic_auth(u, Some(password_of(u)));
    }
    let t = t.send().await.unwrap();
    assert_eq!(t.status(), 200, "token endpoint");
    let body: Value = t.json().await.unwrap();
    http.request(method, format!("{}{path}", s.base))
        .bearer_auth(body["token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn docker_style_flow_challenge_token_retry() {
    let s = start().await;
    let realm = format!("http://127.0.0.1:{}/auth/token", s.addr.port());

    // /v2/ anonymously: the challenge, without a scope.
    let r = s.anonymous().get("/v2/").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        format!("Bearer realm=\"{realm}\",service=\"registry\"").as_str()
    );
    assert_eq!(expect_error(r, 401).await, "UNAUTHORIZED");

    // A resource: the challenge names the scope the request needs.
    for (method, path, scope) in [
        (
            reqwest::Method::GET,
            "/v2/team-a/app/manifests/v1",
            "repository:team-a/app:pull",
        ),
        (
            reqwest::Method::POST,
            "/v2/team-a/app/blobs/uploads/",
            "repository:team-a/app:pull,push",
        ),
        (
            reqwest::Method::DELETE,
            "/v2/team-a/app/manifests/v1",
            "repository:team-a/app:delete",
        ),
        (reqwest::Method::GET, "/v2/_catalog", "registry:catalog:*"),
    ] {
        let r = s.anonymous().request(method, path).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let c = challenge(&r);
        assert_eq!(c["realm"], realm);
        assert_eq!(c["service"], "registry");
        assert_eq!(c["scope"], scope, "{path}");
        assert!(!c.contains_key("error"));
    }

    // docker login: /v2/ with a token for alice.
    let r = docker_request(&s, Some("alice"), reqwest::Method::GET, "/v2/").await;
    assert_eq!(r.status(), 200);

    // The token response.
    let r = token_response(&s, Some("alice"), &["repository:team-a/app:pull,push"]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    let t = body["token"].as_str().unwrap();
    assert_eq!(body["access_token"], t);
    assert_eq!(body["expires_in"], 300);
    let issued = body["issued_at"].as_str().unwrap();
    assert!(
        issued.ends_with('Z') && issued.contains('T'),
        "RFC 3339: {issued}"
    );
    assert!(body.get("refresh_token").is_none());
    let claims = payload(t);
    assert_eq!(claims["iss"], "registry-token-issuer");
    assert_eq!(claims["aud"], "registry");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(
        claims["access"],
        json!([{"type": "repository", "name": "team-a/app", "actions": ["pull", "push"]}])
    );
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(t.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["kid"].as_str().unwrap().split(':').count(), 12);

    // Push with it, pull through the challenge flow.
    let c = bearer(&s, t);
    let (digest, manifest) = c.push_image("team-a/app", "v1", &[b"layer one"]).await;
    let r = docker_request(
        &s,
        Some("alice"),
        reqwest::Method::GET,
        "/v2/team-a/app/manifests/v1",
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
    assert_eq!(r.bytes().await.unwrap(), manifest);
    // Carol (same group) pulls; bob's token (granted nothing) gets 401 with
    // error="insufficient_scope", as from registry:2.
    let r = docker_request(
        &s,
        Some("carol"),
        reqwest::Method::GET,
        "/v2/team-a/app/manifests/v1",
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = docker_request(
        &s,
        Some("bob"),
        reqwest::Method::GET,
        "/v2/team-a/app/manifests/v1",
    )
    .await;
    assert_eq!(r.status(), 401);
    let c = challenge(&r);
    assert_eq!(c["error"], "insufficient_scope");
    assert_eq!(c["scope"], "repository:team-a/app:pull");
    assert_eq!(expect_error(r, 401).await, "UNAUTHORIZED");
    // A token is for this registry's service only.
    let r = reqwest::get(format!("{}/auth/token?service=other", s.base))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn oauth2_post_flow_with_refresh_token() {
    let s = start().await;
    let http = reqwest::Client::new();
    let url = format!("{}/auth/token", s.base);
    let post = |fields: Vec<(&'static str, String)>| {
        let http = http.clone();
        let url = url.clone();
        async move { form(http.post(url), &fields).send().await.unwrap() }
    };
    let r = post(vec![
        ("grant_type", "password".into()),
        ("username", "alice".into()),
        ("password", "secret".into()),
        ("service", "registry".into()),
        ("client_id", "containerd".into()),
        ("access_type", "offline".into()),
        (
            "scope",
            "repository:team-a/app:pull,push repository:team-b/app:pull,push".into(),
        ),
    ])
    .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["scope"],
        "repository:team-a/app:pull,push repository:team-b/app:pull"
    );
    assert_eq!(body["token_type"], "Bearer");
    let access = body["access_token"].as_str().unwrap().to_owned();
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    assert!(body["expires_in"].as_u64().unwrap() > 0);
    bearer(&s, &access)
        .push_image("team-a/app", "v1", &[b"oauth layer"])
        .await;

    // The refresh token is no access token.
    let r = bearer(&s, &refresh)
        .get("/v2/team-a/app/tags/list")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(challenge(&r)["error"], "invalid_token");

    // Refresh: a new access token, for the newly asked scope.
    let r = post(vec![
        ("grant_type", "refresh_token".into()),
        ("refresh_token", refresh.clone()),
        ("service", "registry".into()),
        ("client_id", "containerd".into()),
        ("scope", "repository:team-a/app:pull".into()),
    ])
    .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["scope"], "repository:team-a/app:pull");
    assert!(
        body.get("refresh_token").is_none(),
        "no access_type=offline"
    );
    let again = body["access_token"].as_str().unwrap();
    assert_eq!(payload(again)["sub"], "alice");
    let r = bearer(&s, again)
        .get("/v2/team-a/app/manifests/v1")
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Bad requests.
    for (form, status, error) in [
        (
            vec![
                ("grant_type", "password".to_owned()),
                ("username", "alice".into()),
                ("password", "wrong".into()),
            ],
            401,
            "invalid_grant",
        ),
        (
            vec![
                ("grant_type", "refresh_token".into()),
                ("refresh_token", format!("{refresh}x")),
            ],
            401,
            "invalid_grant",
        ),
        (
            vec![("grant_type", "client_credentials".into())],
            400,
            "unsupported_grant_type",
        ),
        (
            vec![("grant_type", "password".into())],
            400,
            "invalid_request",
        ),
        (vec![], 400, "invalid_request"),
    ] {
        let what = format!("{form:?}");
        let r = post(form).await;
        assert_eq!(r.status(), status, "{what}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], error, "{what}");
    }

    // A changed password revokes the refresh token.
    let path = s.config.auth.htpasswd.path.clone();
    let text = std::fs::read_to_string(&path).unwrap();
    let others: String = text
        .lines()
        .filter(|l| !l.starts_with("alice:"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(
        &path,
        format!(
            "{others}alice:{}\n",
            htpasswd::hash_bcrypt("new-secret", 4).unwrap()
        ),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = post(vec![
            ("grant_type", "refresh_token".into()),
            ("refresh_token", refresh.clone()),
        ])
        .await;
        if r.status() == 401 {
            break;
        }
        assert_eq!(r.status(), 200);
        assert!(
            Instant::now() < deadline,
            "refresh token still works 15 s after the password changed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn scope_is_granted_in_part() {
    let s = start().await;
    // bob pushes to team-b; alice may pull it but not push.
    let b = token(&s, Some("bob"), &["repository:team-b/app:pull,push"]).await;
    bearer(&s, &b)
        .push_image("team-b/app", "v1", &[b"b layer"])
        .await;
    let t = token(
        &s,
        Some("alice"),
        &["repository:team-b/app:pull,push,delete"],
    )
    .await;
    assert_eq!(
        payload(&t)["access"],
        json!([{"type": "repository", "name": "team-b/app", "actions": ["pull"]}])
    );
    let c = bearer(&s, &t);
    let r = c
        .get("/v2/team-b/app/manifests/v1")
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .post("/v2/team-b/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(challenge(&r)["scope"], "repository:team-b/app:pull,push");
    assert_eq!(expect_error(r, 401).await, "UNAUTHORIZED");
    // Nothing allowed at all: a token with no access, not an error.
    let t = token(&s, Some("carol"), &["repository:team-b/app:pull"]).await;
    assert_eq!(payload(&t)["access"], json!([]));
    // Several scopes, several repositories, one token.
    let t = token(
        &s,
        Some("alice"),
        &["repository:team-a/x:push", "repository:public/y:pull,push"],
    )
    .await;
    assert_eq!(
        payload(&t)["access"],
        json!([
            {"type": "repository", "name": "team-a/x", "actions": ["push"]},
            {"type": "repository", "name": "public/y", "actions": ["pull", "push"]},
        ])
    );
}

#[tokio::test]
async fn acl_matrix_in_token_mode() {
    let s = start().await;
    let push = |user: &'static str, repo: &'static str| {
        let s = &s;
        async move {
            let t = token(s, Some(user), &[&format!("repository:{repo}:pull,push")]).await;
            bearer(s, &t)
                .post(&format!(
                    "/v2/{repo}/blobs/uploads/?digest={}",
                    sha256_digest(b"matrix")
                ))
                .body(&b"matrix"[..])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // (user, repository, the push's status)
    for (user, repo, status) in [
        ("alice", "team-a/app", 201),
        ("alice", "team-b/app", 401),
        ("bob", "team-b/app", 201),
        ("bob", "team-a/app", 401),
        ("carol", "team-a/app", 201),
        ("root", "anything/else", 201),
        ("alice", "unlisted/repo", 401),
        ("alice", "public/app", 201),
    ] {
        assert_eq!(push(user, repo).await, status, "{user} pushes to {repo}");
    }

    // Anonymous: a token without credentials pulls only where a rule allows.
    let alice = token(&s, Some("alice"), &["repository:public/app:pull,push"]).await;
    bearer(&s, &alice)
        .push_image("public/app", "v1", &[b"public layer"])
        .await;
    let a = token(&s, None, &["repository:public/app:pull,push"]).await;
    assert_eq!(payload(&a)["sub"], "");
    assert_eq!(
        payload(&a)["access"],
        json!([{"type": "repository", "name": "public/app", "actions": ["pull"]}])
    );
    for (method, path, status) in [
        (reqwest::Method::GET, "/v2/public/app/manifests/v1", 200),
        (reqwest::Method::GET, "/v2/team-a/app/tags/list", 401),
        (reqwest::Method::POST, "/v2/public/app/blobs/uploads/", 401),
    ] {
        let what = format!("anonymous {method} {path}");
        let r = docker_request(&s, None, method, path).await;
        assert_eq!(r.status(), status, "{what}");
    }

    // Delete: alice may in team-a, carol may not.
    for (user, status) in [("carol", 401), ("alice", 202)] {
        let t = token(&s, Some(user), &["repository:team-a/app:delete"]).await;
        let r = bearer(&s, &t)
            .delete(&format!(
                "/v2/team-a/app/blobs/{}",
                sha256_digest(b"matrix")
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{user} deletes in team-a");
    }
}

#[tokio::test]
async fn catalog_needs_its_scope() {
    let s = start().await;
    let t = token(&s, Some("root"), &["repository:x/y:push,pull"]).await;
    bearer(&s, &t).push_image("x/y", "v1", &[b"c"]).await;
    // A token for a repository does not open the catalog.
    let r = bearer(&s, &t).get("/v2/_catalog").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(challenge(&r)["scope"], "registry:catalog:*");
    // carol may list it; alice asks and is granted nothing.
    let t = token(&s, Some("alice"), &["registry:catalog:*"]).await;
    assert_eq!(payload(&t)["access"], json!([]));
    let r = bearer(&s, &t).get("/v2/_catalog").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let t = token(&s, Some("carol"), &["registry:catalog:*"]).await;
    assert_eq!(
        payload(&t)["access"],
        json!([{"type": "registry", "name": "catalog", "actions": ["*"]}])
    );
    let r = bearer(&s, &t).get("/v2/_catalog").send().await.unwrap();
    assert_eq!(r.status(), 200);
    // The catalog shows only what its user may pull (the ACL, for the
    // token's subject): carol may not pull x/y, root (an admin) may.
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["repositories"], json!([]));
    let r = docker_request(&s, Some("root"), reqwest::Method::GET, "/v2/_catalog").await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["repositories"], json!(["x/y"]));
}

/// Our signing key, read back from the file the server generated.
fn our_key(s: &TestServer) -> (EncodingKey, String, Vec<u8>) {
    let path = s.config.auth.token.signing_key.clone();
    let text = std::fs::read_to_string(&path).unwrap();
    let block = der::pem_blocks(&text).unwrap().remove(0);
    assert_eq!(block.label, "PRIVATE KEY");
    let (point, kid) = p256_public(&block.der);
    (EncodingKey::from_ec_der(&block.der), kid, point)
}

fn p256_public(pkcs8: &[u8]) -> (Vec<u8>, String) {
    use ring::signature::KeyPair as _;
    let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        pkcs8,
        &ring::rand::SystemRandom::new(),
    )
    .unwrap();
    let point = pair.public_key().as_ref().to_vec();
    let kid = PublicKey::P256(point.clone()).libtrust_kid();
    (point, kid)
}

fn new_p256() -> Vec<u8> {
    ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &ring::rand::SystemRandom::new(),
    )
    .unwrap()
    .as_ref()
    .to_vec()
}

fn claims(repo: &str, actions: &[&str]) -> Value {
    let t = now();
    json!({
        "iss": "registry-token-issuer",
        "sub": "alice",
        "aud": "registry",
        "exp": t + 300,
        "nbf": t - 10,
        "iat": t,
        "jti": "forged",
        "access": [{"type": "repository", "name": repo, "actions": actions}],
    })
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&h, claims, key).unwrap()
}

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

#[tokio::test]
async fn forged_tokens_are_refused() {
    let s = start().await;
    let (key, kid, point) = our_key(&s);
    let valid = sign(
        Algorithm::ES256,
        Some(&kid),
        &claims("team-a/app", &["pull", "push", "delete"]),
        &key,
    );
    bearer(&s, &valid)
        .push_image("team-a/app", "v1", &[b"precious"])
        .await;
    let get = "/v2/team-a/app/manifests/v1";
    let r = bearer(&s, &valid)
        .get(get)
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "the control token, signed with our key, works"
    );

    let base = claims("team-a/app", &["pull", "delete"]);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = base.clone();
        f(&mut c);
        c
    };
    let t = now();
    // Our key and kid over `base` changed by `f`: what a forger cannot sign.
    let ours_with = |f: &dyn Fn(&mut Value)| sign(Algorithm::ES256, Some(&kid), &with(f), &key);
    let public_pem = der::pem_encode("PUBLIC KEY", &PublicKey::P256(point.clone()).spki());
    let other = new_p256();
    let (_, other_kid) = p256_public(&other);
    let other_key = EncodingKey::from_ec_der(&other);
    let parts: Vec<&str> = valid.split('.').collect();
    let mut tampered_claims: Value = payload(&valid);
    tampered_claims["access"][0]["name"] = json!("team-b/app");

    let forged: Vec<(&str, String)> = vec![
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "JWT", "kid": kid})),
                b64(&base)
            ),
        ),
        (
            "alg none with a signature",
            format!(
                "{}.{}.{}",
                b64(&json!({"alg": "none", "kid": kid})),
                b64(&base),
                parts[2]
            ),
        ),
        (
            "HS256 keyed with the public key PEM",
            sign(
                Algorithm::HS256,
                Some(&kid),
                &base,
                &EncodingKey::from_secret(public_pem.as_bytes()),
            ),
        ),
        (
            "HS256 keyed with the public point",
            sign(
                Algorithm::HS256,
                Some(&kid),
                &base,
                &EncodingKey::from_secret(&point),
            ),
        ),
        (
            "wrong key claiming our kid",
            sign(Algorithm::ES256, Some(&kid), &base, &other_key),
        ),
        (
            "wrong key with its own kid",
            sign(Algorithm::ES256, Some(&other_kid), &base, &other_key),
        ),
        ("no kid", sign(Algorithm::ES256, None, &base, &key)),
        (
            "expired",
            ours_with(&|c| {
                c["exp"] = json!(t - 3600);
                c["nbf"] = json!(t - 7200);
            }),
        ),
        (
            "not yet valid",
            ours_with(&|c| {
                c["nbf"] = json!(t + 3600);
                c["exp"] = json!(t + 7200);
            }),
        ),
        (
            "nbf of the wrong type (a string in the future)",
            ours_with(&|c| c["nbf"] = json!((t + 3600).to_string())),
        ),
        (
            "no exp",
            ours_with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
        ),
        (
            "wrong audience",
            ours_with(&|c| c["aud"] = json!("another-registry")),
        ),
        (
            "no audience",
            ours_with(&|c| {
                c.as_object_mut().unwrap().remove("aud");
            }),
        ),
        (
            "wrong issuer",
            ours_with(&|c| c["iss"] = json!("evil-issuer")),
        ),
        (
            "tampered payload",
            format!("{}.{}.{}", parts[0], b64(&tampered_claims), parts[2]),
        ),
        (
            "tampered header",
            format!(
                "{}.{}.{}",
                b64(&json!({"alg": "ES256", "kid": kid, "x": 1})),
                parts[1],
                parts[2]
            ),
        ),
        ("not a JWT", "abc.def".to_owned()),
        ("garbage", "!!!.???.***".to_owned()),
    ];
    for (what, token) in &forged {
        for (method, path) in [
            (reqwest::Method::GET, get.to_owned()),
            (reqwest::Method::DELETE, get.to_owned()),
        ] {
            let r = bearer(&s, token)
                .request(method.clone(), &path)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401, "{what} ({method} {path})");
            let c = challenge(&r);
            assert_eq!(c["error"], "invalid_token", "{what}");
            assert_eq!(expect_error(r, 401).await, "UNAUTHORIZED", "{what}");
        }
    }
    // Validly signed, for another repository: insufficient scope (401), and
    // it cannot reach here.
    let elsewhere = sign(
        Algorithm::ES256,
        Some(&kid),
        &claims("team-b/app", &["pull", "push", "delete"]),
        &key,
    );
    let r = bearer(&s, &elsewhere).get(get).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(challenge(&r)["error"], "insufficient_scope");
    let r = bearer(&s, &elsewhere).delete(get).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // Everything is still there.
    let r = bearer(&s, &valid)
        .get(get)
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "nothing was deleted by a forged token");
    // A small clock skew is tolerated.
    let skewed = ours_with(&|c| {
        c["exp"] = json!(t - 5);
        c["nbf"] = json!(t + 5);
    });
    let r = bearer(&s, &skewed)
        .get(get)
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "5 s of skew is within the leeway");
}

fn issuer_claims(repo: &str) -> Value {
    let mut c = claims(repo, &["pull", "push"]);
    c["iss"] = json!("gitlab-issuer");
    c["aud"] = json!(["container_registry"]);
    c
}

/// An external issuer, registry:2 style: REGISTRY_AUTH=token and its
/// variables, a certificate bundle, tokens found by `kid` (libtrust
/// fingerprint) or by `x5c`; ES256, RS256 and EdDSA.
#[tokio::test]
async fn external_issuer_with_rootcertbundle() {
    let dir = tempfile::tempdir().unwrap();
    let (ec_key, ec_cert) = issuer_cert(
        dir.path(),
        "ec",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
    );
    let (rsa_key, rsa_cert) = issuer_cert(dir.path(), "rsa", &["-newkey", "rsa:2048"]);
    let ed_key = dir.path().join("ed.key");
    openssl(&[
        "genpkey",
        "-algorithm",
        "ed25519",
        "-out",
        ed_key.to_str().unwrap(),
    ]);
    let ed_pub = dir.path().join("ed.pub");
    openssl(&[
        "pkey",
        "-in",
        ed_key.to_str().unwrap(),
        "-pubout",
        "-out",
        ed_pub.to_str().unwrap(),
    ]);
    let bundle = dir.path().join("bundle.pem");
    std::fs::write(
        &bundle,
        std::fs::read_to_string(&ec_cert).unwrap() + &std::fs::read_to_string(&rsa_cert).unwrap(),
    )
    .unwrap();
    let (b, e) = (bundle.clone(), ed_pub.clone());
    let s = TestServer::start_with(move |c| {
        let env = [
            ("REGISTRY_AUTH", "token"),
            (
                "REGISTRY_AUTH_TOKEN_REALM",
                "https://auth.example.test/jwt/auth",
            ),
            ("REGISTRY_AUTH_TOKEN_SERVICE", "container_registry"),
            ("REGISTRY_AUTH_TOKEN_ISSUER", "gitlab-issuer"),
            ("REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE", b.to_str().unwrap()),
        ];
        let mut loaded = Config::load(
            None,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .unwrap();
        loaded.http = c.http.clone();
        loaded.storage = c.storage.clone();
        loaded.auth.htpasswd = c.auth.htpasswd.clone();
        loaded.auth.token.trusted_keys = vec![e];
        *c = loaded;
    })
    .await;
    assert_eq!(s.config.auth.mode, AuthMode::Token);
    // The challenge names the external realm; our endpoint is off.
    let r = s
        .anonymous()
        .get("/v2/x/manifests/v1")
        .send()
        .await
        .unwrap();
    let c = challenge(&r);
    assert_eq!(c["realm"], "https://auth.example.test/jwt/auth");
    assert_eq!(c["service"], "container_registry");
    let r = reqwest::get(format!("{}/auth/token?service=container_registry", s.base))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // ES256 by kid.
    let ec = EncodingKey::from_ec_der(&private_der(&ec_key));
    let kid = spki_of_cert(&ec_cert).libtrust_kid();
    let t = sign(Algorithm::ES256, Some(&kid), &issuer_claims("ext/es"), &ec);
    bearer(&s, &t).push_image("ext/es", "v1", &[b"es"]).await;
    // RS256 by x5c (the leaf is in the bundle), no kid.
    let rsa_pkcs1 = match der::private_key(
        &der::pem_blocks(&std::fs::read_to_string(&rsa_key).unwrap()).unwrap()[0],
    )
    .unwrap()
    {
        der::PrivateKey::Rsa(k) => k,
        other => panic!("{other:?}"),
    };
    let rsa = EncodingKey::from_rsa_der(&rsa_pkcs1);
    let cert_der = der::pem_blocks(&std::fs::read_to_string(&rsa_cert).unwrap())
        .unwrap()
        .remove(0)
        .der;
    let mut h = Header::new(Algorithm::RS256);
    h.x5c = Some(vec![
        base64::engine::general_purpose::STANDARD.encode(&cert_der)
    ]);
    let t = jsonwebtoken::encode(&h, &issuer_claims("ext/rs"), &rsa).unwrap();
    bearer(&s, &t).push_image("ext/rs", "v1", &[b"rs"]).await;
    // RS256 by kid too.
    let rsa_kid = spki_of_cert(&rsa_cert).libtrust_kid();
    let t = sign(
        Algorithm::RS256,
        Some(&rsa_kid),
        &issuer_claims("ext/rs"),
        &rsa,
    );
    assert_eq!(
        bearer(&s, &t)
            .get("/v2/ext/rs/tags/list")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // EdDSA from trusted_keys (a PUBLIC KEY file).
    let ed_pkcs8 = private_der(&ed_key);
    let ed_public = der::pem_blocks(&std::fs::read_to_string(&ed_pub).unwrap())
        .unwrap()
        .remove(0)
        .der;
    let ed_kid = PublicKey::from_spki(&ed_public).unwrap().libtrust_kid();
    let t = sign(
        Algorithm::EdDSA,
        Some(&ed_kid),
        &issuer_claims("ext/ed"),
        &EncodingKey::from_ed_der(&ed_pkcs8),
    );
    bearer(&s, &t).push_image("ext/ed", "v1", &[b"ed"]).await;

    // Refused: the issuer's key with our default issuer name, a
    // certificate that is not in the bundle, the EC key signing RS256.
    let mut wrong_iss = issuer_claims("ext/es");
    wrong_iss["iss"] = json!("registry-token-issuer");
    let t = sign(Algorithm::ES256, Some(&kid), &wrong_iss, &ec);
    assert_eq!(
        bearer(&s, &t)
            .get("/v2/ext/es/tags/list")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let (other_key, other_cert) = issuer_cert(dir.path(), "other", &["-newkey", "rsa:2048"]);
    let other_pkcs1 = match der::private_key(
        &der::pem_blocks(&std::fs::read_to_string(&other_key).unwrap()).unwrap()[0],
    )
    .unwrap()
    {
        der::PrivateKey::Rsa(k) => k,
        other => panic!("{other:?}"),
    };
    let mut h = Header::new(Algorithm::RS256);
    h.x5c = Some(vec![base64::engine::general_purpose::STANDARD.encode(
        der::pem_blocks(&std::fs::read_to_string(&other_cert).unwrap())
            .unwrap()
            .remove(0)
            .der,
    )]);
    let t = jsonwebtoken::encode(
        &h,
        &issuer_claims("ext/rs"),
        &EncodingKey::from_rsa_der(&other_pkcs1),
    )
    .unwrap();
    assert_eq!(
        bearer(&s, &t)
            .get("/v2/ext/rs/tags/list")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

/// The generated key is persisted: tokens survive a restart. Rotation: a
/// new signing key with the old one in `trusted_keys` accepts old tokens;
/// without it, they are refused.
#[tokio::test]
async fn tokens_survive_restart_and_key_rotation() {
    let s = start().await;
    let t = token(&s, Some("alice"), &["repository:team-a/app:pull,push"]).await;
    bearer(&s, &t)
        .push_image("team-a/app", "v1", &[b"persist"])
        .await;
    let key_path = s.config.auth.token.signing_key.clone();
    // docker login's refresh token (its identity token).
    let r = reqwest::Client::new()
        .get(format!(
            "{}/auth/token?service=registry&offline_token=true&client_id=docker",
            s.base
        ))
        .basic_auth("alice", Some("secret"))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    let refresh = body["refresh_token"]
        .as_str()
        .expect("refresh_token with offline_token=true")
        .to_owned();
    let refresh_status = |s: &TestServer| {
        let url = format!("{}/auth/token", s.base);
        let refresh = refresh.clone();
        async move {
            form(
                reqwest::Client::new().post(url),
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh.as_str()),
                    ("scope", "repository:team-a/app:pull"),
                ],
            )
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
        }
    };
    assert_eq!(refresh_status(&s).await, 200);
    let s = s.restart().await;
    let r = bearer(&s, &t)
        .get("/v2/team-a/app/tags/list")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a token from before the restart");

    // Rotate: move the old key aside, trust it, let a new one be generated.
    let old = key_path.with_file_name("old-key.pem");
    std::fs::rename(&key_path, &old).unwrap();
    let mut s = s;
    s.config.auth.token.trusted_keys = vec![old.clone()];
    let s = s.restart().await;
    let fresh = token(&s, Some("alice"), &["repository:team-a/app:pull"]).await;
    assert_ne!(
        serde_json::from_slice::<Value>(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(fresh.split('.').next().unwrap())
                .unwrap()
        )
        .unwrap()["kid"],
        serde_json::from_slice::<Value>(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t.split('.').next().unwrap())
                .unwrap()
        )
        .unwrap()["kid"],
        "a new key signs"
    );
    assert_eq!(
        bearer(&s, &t)
            .get("/v2/team-a/app/tags/list")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        bearer(&s, &fresh)
            .get("/v2/team-a/app/tags/list")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        refresh_status(&s).await,
        200,
        "a refresh token from the previous key"
    );
    let mut s = s;
    s.config.auth.token.trusted_keys.clear();
    let s = s.restart().await;
    let r = bearer(&s, &t)
        .get("/v2/team-a/app/tags/list")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the retired key's tokens");
    assert_eq!(
        refresh_status(&s).await,
        401,
        "the retired key's refresh tokens"
    );
    assert_eq!(
        bearer(&s, &fresh)
            .get("/v2/team-a/app/tags/list")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

fn client_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::from(ip)))
        .build()
        .unwrap()
}

/// 50 wrong passwords in a row from one address: refused, then throttled
/// with 429 and Retry-After; the right password from another client still
/// gets a token.
#[tokio::test]
async fn brute_force_on_the_token_endpoint_is_throttled() {
    let s = start().await;
    let url = format!(
        "{}/auth/token?service=registry&scope=repository:team-a/app:pull",
        s.base
    );
    let attacker = client_from([127, 0, 0, 1]);
    let mut statuses = Vec::new();
    for i in 0..50 {
        let r = attacker
            .get(&url)
            .basic_auth("alice", Some(format!("guess-{i}")))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        if status == 429 {
            let retry: u64 = r.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=60).contains(&retry), "Retry-After {retry}");
            assert_eq!(expect_error(r, 429).await, "TOOMANYREQUESTS");
        }
        statuses.push(status);
    }
    assert!(statuses[..10].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[10..].iter().all(|s| *s == 429), "{statuses:?}");
    // Even the right password from the attacker's address waits.
    let r = attacker
        .get(&url)
        .basic_auth("alice", Some("secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    // The OAuth2 form counts against the same limit.
    let r = form(
        attacker.post(format!("{}/auth/token", s.base)),
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "x"),
        ],
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 429);
    // alice from her own machine is fine.
    let r = client_from([127, 0, 0, 2])
        .get(&url)
        .basic_auth("alice", Some("secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Guessing one user's password from many addresses trips the per-user
/// limit: a new address is throttled for that user, the address that
/// logged in as the user before is not, other users are not.
#[tokio::test]
async fn per_user_limit_across_addresses() {
    let s = TestServer::start_with(|c| {
        token_mode(c);
        c.auth.htpasswd.max_failures_per_user_per_minute = 6;
        // No success cache: every login below is a real verification (a
        // cached, exactly right password is let in regardless, by design).
        c.auth.htpasswd.cache_ttl_secs = 0;
    })
    .await;
    let url = format!("{}/auth/token?service=registry", s.base);
    let home = client_from([127, 0, 0, 20]);
    assert_eq!(
        home.get(&url)
            .basic_auth("bob", Some("bobpw"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    for host in 21..24u8 {
        let c = client_from([127, 0, 0, host]);
        for _ in 0..2 {
            let r = c
                .get(&url)
                .basic_auth("bob", Some("nope"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401);
        }
    }
    let fresh = client_from([127, 0, 0, 30]);
    let r = fresh
        .get(&url)
        .basic_auth("bob", Some("bobpw"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "TOOMANYREQUESTS");
    // bob's own address is let in.
    assert_eq!(
        home.get(&url)
            .basic_auth("bob", Some("bobpw"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        fresh
            .get(&url)
            .basic_auth("alice", Some("secret"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// Audit lines for a failed login, a token, a push, a denial and a delete;
/// no password or token in the file.
#[tokio::test]
async fn audit_log_records_logins_denials_pushes_and_deletes() {
    let s = start().await;
    let path = s.config.auth.audit_log.clone().unwrap();
    let r = token_response(&s, None, &[]).await;
    assert_eq!(r.status(), 200);
    let r = reqwest::Client::new()
        .get(format!("{}/auth/token?service=registry", s.base))
        .basic_auth("alice", Some("wrong-password-xyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let t = token(
        &s,
        Some("alice"),
        &["repository:team-a/app:pull,push,delete"],
    )
    .await;
    let (digest, _) = bearer(&s, &t)
        .push_image("team-a/app", "v1", &[b"audited"])
        .await;
    let b = token(&s, Some("bob"), &["repository:team-a/app:pull"]).await;
    assert_eq!(
        bearer(&s, &b)
            .get("/v2/team-a/app/tags/list")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let r = bearer(&s, &t)
        .delete(&format!("/v2/team-a/app/manifests/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    let deadline = Instant::now() + Duration::from_secs(10);
    let lines: Vec<Value> = loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect();
        if lines.iter().any(|l| l["event"] == "delete") {
            assert!(
                !text.contains("wrong-password-xyz") && !text.contains("secret"),
                "a password in the audit log"
            );
            assert!(
                !text.contains(&t) && !text.contains(&b),
                "a token in the audit log"
            );
            break lines;
        }
        assert!(
            Instant::now() < deadline,
            "no delete event in the audit log:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let find = |event: &str, user: &str| {
        lines
            .iter()
            .find(|l| l["event"] == event && l["user"].as_str().unwrap_or("") == user)
            .unwrap_or_else(|| panic!("no {event} event for {user:?} in {lines:#?}"))
            .clone()
    };
    let failed = find("login_failed", "alice");
    assert_eq!(failed["client"], "127.0.0.1");
    assert!(failed["time"].as_str().unwrap().ends_with('Z'));
    let issued = find("token", "alice");
    assert_eq!(
        issued["requested"],
        "repository:team-a/app:pull,push,delete"
    );
    assert_eq!(issued["granted"], "repository:team-a/app:pull,push,delete");
    let b_issued = find("token", "bob");
    assert_eq!(b_issued.get("granted"), None, "nothing granted");
    let anon = find("token", "");
    assert_eq!(anon.get("granted"), None);
    let pushed: Vec<_> = lines
        .iter()
        .filter(|l| l["event"] == "push" && l["user"] == "alice")
        .collect();
    assert_eq!(pushed.len(), 3, "config, layer, manifest: {pushed:#?}");
    assert!(pushed.iter().all(|l| l["repository"] == "team-a/app"));
    assert!(pushed
        .iter()
        .any(|l| l["reference"] == format!("v1@{digest}").as_str()));
    let denied = find("denied", "bob");
    assert_eq!(denied["repository"], "team-a/app");
    assert_eq!(denied["requested"], "repository:team-a/app:pull");
    let deleted = find("delete", "alice");
    assert_eq!(deleted["reference"], digest.as_str());
}

/// Security review, item 16: an external issuer's token subject was looked
/// up as a local name in `acl.admins` and the catalog's lists, so an
/// identity-provider user named like a local admin (`root`) listed every
/// repository. An external issuer's subjects are known to `[acl]` only
/// issuer-qualified, `<subject>@<issuer>`.
#[tokio::test]
async fn an_external_issuers_user_named_like_a_local_admin_is_no_admin() {
    let dir = tempfile::tempdir().unwrap();
    let (ec_key, ec_cert) = issuer_cert(
        dir.path(),
        "ec",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
    );
    let bundle = ec_cert.clone();
    let s = TestServer::start_with(move |c| {
        token_mode(c);
        // Both kinds of token: local users from the built-in endpoint, and
        // an external issuer's.
        c.auth.token.endpoint = Some(true);
        c.auth.token.rootcertbundle = Some(bundle);
        let mut acl: registry::config::AclConfig = toml::from_str(ACL).unwrap();
        acl.admins.push("ops@registry-token-issuer".into());
        c.acl = Some(acl);
    })
    .await;
    // The local admin pushes a private repository.
    let t = token(&s, Some("root"), &["repository:private/app:push,pull"]).await;
    bearer(&s, &t)
        .push_image("private/app", "v1", &[b"p"])
        .await;
    let ec = EncodingKey::from_ec_der(&private_der(&ec_key));
    let kid = spki_of_cert(&ec_cert).libtrust_kid();
    let external = |sub: &str| {
        let mut c = claims("private/app", &[]);
        c["sub"] = json!(sub);
        c["access"] = json!([{"type": "registry", "name": "catalog", "actions": ["*"]}]);
        sign(Algorithm::ES256, Some(&kid), &c, &ec)
    };
    let catalog = |t: String| {
        let c = bearer(&s, &t);
        async move {
            let r = c.get("/v2/_catalog").send().await.unwrap();
            assert_eq!(r.status(), 200);
            let body: Value = r.json().await.unwrap();
            body["repositories"].clone()
        }
    };
    // The local root is an admin; the external "root" is not.
    let local = token(&s, Some("root"), &["registry:catalog:*"]).await;
    assert_eq!(catalog(local).await, json!(["private/app"]));
    assert_eq!(catalog(external("root")).await, json!([]), "external root");
    // An issuer-qualified admin entry names the external user.
    assert_eq!(catalog(external("ops")).await, json!(["private/app"]));
}

/// distribution-spec main, "Warnings": a request with a bearer token that
/// expires within 30 s is answered (as usual) with a `Warning: 299 - "..."`
/// saying so, within the spec's 4,096 bytes; a fresher token gets none.
#[tokio::test]
async fn a_token_about_to_expire_gets_a_warning() {
    let s = start().await;
    let (key, kid, _) = our_key(&s);
    let fresh = claims("team-a/app", &["pull", "push"]);
    let fresh = sign(Algorithm::ES256, Some(&kid), &fresh, &key);
    bearer(&s, &fresh)
        .push_image("team-a/app", "v1", &[b"warned"])
        .await;
    let mut soon = claims("team-a/app", &["pull"]);
    soon["exp"] = json!(now() + 20);
    let soon = sign(Algorithm::ES256, Some(&kid), &soon, &key);
    for (token, warned) in [(&soon, true), (&fresh, false)] {
        let r = bearer(&s, token)
            .get("/v2/team-a/app/manifests/v1")
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let warnings: Vec<&str> = r
            .headers()
            .get_all("warning")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        if warned {
            assert_eq!(warnings.len(), 1, "{warnings:?}");
            assert!(
                warnings[0].starts_with("299 - \"the bearer token of this request expires in ")
                    && warnings[0].ends_with("request a new one\"")
                    && warnings[0].len() <= 4096,
                "{warnings:?}"
            );
        } else {
            assert!(warnings.is_empty(), "{warnings:?}");
        }
    }
}
