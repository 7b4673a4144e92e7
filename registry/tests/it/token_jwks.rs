//! registry:3-style token verification: a JWKS (file, and a URL read again
//! on an unknown `kid`), `signingalgorithms`, the RFC 7638 thumbprint as
//! `kid`, and `x5c` chains up to `rootcertbundle`. Tokens are shaped like
//! those of the issuers users run: Keycloak (RS256, a random `kid` published
//! in its JWKS) and cesanta/docker_auth (ES256, libtrust `kid`, `x5c`).

use crate::support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use registry::auth::der::PublicKey;
use registry::config::AuthMode;
use serde_json::json;
use support::token_issuer::{issuer_cert, openssl, private_der, spki_of_cert};
use support::TestServer;

const ISSUER: &str = "https://keycloak.example.com/realms/registry";
const SERVICE: &str = "registry.example.com";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(exp_in: i64) -> serde_json::Value {
    json!({
        "iss": ISSUER,
        "sub": "alice",
        "aud": SERVICE,
        "exp": now() + exp_in,
        "nbf": now() - 5,
        "iat": now(),
        "jti": format!("{}", rand_u64()),
        "access": [{"type": "repository", "name": "team/app", "actions": ["pull"]}],
    })
}

fn rand_u64() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::Relaxed) ^ (now() as u64) << 20
}

/// An RSA key as Keycloak holds one: its PEM, and its JWK with `kid`.
struct RsaKey {
    pkcs1: Vec<u8>,
    jwk: serde_json::Value,
    kid: String,
}

fn rsa_key(dir: &Path, kid: &str) -> RsaKey {
    let path = dir.join(format!("{kid}.pem"));
    // PKCS#1, what jsonwebtoken's DER loader takes.
    openssl(&[
        "genrsa",
        "-traditional",
        "-out",
        path.to_str().unwrap(),
        "2048",
    ]);
    let out = std::process::Command::new("openssl")
        .args(["rsa", "-noout", "-modulus", "-in"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let n = hex::decode(text.trim().trim_start_matches("Modulus=")).unwrap();
    RsaKey {
        pkcs1: private_der(&path),
        jwk: json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                    "n": B64.encode(&n), "e": "AQAB"}),
        kid: kid.to_owned(),
    }
}

fn rs256(key: &RsaKey, kid: &str, exp_in: i64) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    header.typ = Some("JWT".into());
    jsonwebtoken::encode(
        &header,
        &claims(exp_in),
        &EncodingKey::from_rsa_der(&key.pkcs1),
    )
    .unwrap()
}

fn jwks(keys: &[&RsaKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

/// A JWKS endpoint whose document the test replaces, counting reads.
struct JwksServer {
    url: String,
    doc: Arc<Mutex<String>>,
    reads: Arc<Mutex<usize>>,
}

async fn jwks_server(initial: String) -> JwksServer {
    let doc = Arc::new(Mutex::new(initial));
    let reads = Arc::new(Mutex::new(0));
    let (d, r) = (doc.clone(), reads.clone());
    let app = axum::Router::new().route(
        "/realms/registry/protocol/openid-connect/certs",
        axum::routing::get(move || {
            let (d, r) = (d.clone(), r.clone());
            async move {
                *r.lock().unwrap() += 1;
                let body = d.lock().unwrap().clone();
                ([("content-type", "application/json")], body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    JwksServer {
        url: format!("http://{addr}/realms/registry/protocol/openid-connect/certs"),
        doc,
        reads,
    }
}

async fn server(jwks: Option<String>, bundle: Option<PathBuf>, algs: &[&str]) -> TestServer {
    let algs: Vec<String> = algs.iter().map(|s| s.to_string()).collect();
    TestServer::start_with(move |c| {
        c.auth.mode = AuthMode::Token;
        let t = &mut c.auth.token;
        t.realm = Some("https://keycloak.example.com/auth".into());
        t.service = SERVICE.into();
        t.issuer = ISSUER.into();
        t.endpoint = Some(false);
        t.jwks = jwks;
        t.rootcertbundle = bundle;
        t.signingalgorithms = algs;
    })
    .await
}

/// The status of `GET /v2/team/app/tags/list` with `token` (404: let in,
/// the repository is empty; 401: refused).
async fn status(s: &TestServer, token: &str) -> u16 {
    s.anonymous()
        .get("/v2/team/app/tags/list")
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

const IN: u16 = 404;
const OUT: u16 = 401;

#[tokio::test(flavor = "multi_thread")]
async fn keycloak_jwks_url_rotation_unknown_kid_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let old = rsa_key(dir.path(), "kHsL0YtWq3eR8n2m-old");
    let new = rsa_key(dir.path(), "Zp4Qv7xJ1aB9cD0e-new");
    let issuer = jwks_server(jwks(&[&old])).await;
    let s = server(Some(issuer.url.clone()), None, &[]).await;

    let before = rs256(&old, &old.kid, 300);
    assert_eq!(status(&s, &before).await, IN);
    // Rotation: Keycloak publishes the new key next to the old one.
    *issuer.doc.lock().unwrap() = jwks(&[&new, &old]);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let after = rs256(&new, &new.kid, 300);
    assert_eq!(
        status(&s, &after).await,
        IN,
        "a new kid reads the JWKS again"
    );
    assert_eq!(status(&s, &before).await, IN, "old tokens stay valid");
    assert_eq!(
        status(&s, &rs256(&old, &old.kid, 300)).await,
        IN,
        "the old key still verifies until it leaves the JWKS"
    );
    let reads = *issuer.reads.lock().unwrap();
    assert_eq!(reads, 2, "read at first use and once after the rotation");

    // Unknown kid: refused, and a flood of them reads the JWKS at most once
    // a second.
    let stranger = rsa_key(dir.path(), "not-published");
    for _ in 0..5 {
        assert_eq!(status(&s, &rs256(&stranger, &stranger.kid, 300)).await, OUT);
    }
    assert!(*issuer.reads.lock().unwrap() <= reads + 1);
    // A published kid on a token signed by another key, and an expired one.
    assert_eq!(status(&s, &rs256(&stranger, &new.kid, 300)).await, OUT);
    assert_eq!(status(&s, &rs256(&new, &new.kid, -120)).await, OUT);
}

#[tokio::test(flavor = "multi_thread")]
async fn jwks_file_and_signing_algorithms() {
    let dir = tempfile::tempdir().unwrap();
    let key = rsa_key(dir.path(), "file-key");
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks(&[&key])).unwrap();
    let file = path.to_str().unwrap().to_owned();

    let s = server(Some(file.clone()), None, &["RS256"]).await;
    assert_eq!(status(&s, &rs256(&key, &key.kid, 300)).await, IN);
    s.stop().await;

    // RS256 is not among the allowed algorithms: refused.
    let s = server(Some(file.clone()), None, &["ES256", "EdDSA"]).await;
    assert_eq!(status(&s, &rs256(&key, &key.kid, 300)).await, OUT);
    // And HS256 with the public key as secret never verifies.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(key.kid.clone());
    let forged = jsonwebtoken::encode(
        &header,
        &claims(300),
        &EncodingKey::from_secret(key.jwk["n"].as_str().unwrap().as_bytes()),
    )
    .unwrap();
    assert_eq!(status(&s, &forged).await, OUT);
}

/// registry:3 and go-jose issuers name a key by its RFC 7638 thumbprint;
/// the same certificate's libtrust kid keeps working.
#[tokio::test(flavor = "multi_thread")]
async fn thumbprint_and_libtrust_kids_of_a_bundle_key() {
    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = issuer_cert(
        dir.path(),
        "issuer",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
    );
    let public: PublicKey = spki_of_cert(&cert);
    let encoding = EncodingKey::from_ec_der(&private_der(&key));
    let s = server(None, Some(cert), &[]).await;
    for kid in [
        registry::auth::jwk::thumbprint(&public),
        public.libtrust_kid(),
    ] {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.clone());
        let token = jsonwebtoken::encode(&header, &claims(300), &encoding).unwrap();
        assert_eq!(status(&s, &token).await, IN, "kid {kid}");
    }
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("some-other-kid".into());
    let token = jsonwebtoken::encode(&header, &claims(300), &encoding).unwrap();
    assert_eq!(status(&s, &token).await, OUT);
}

/// `openssl x509 -req` signing `name`'s new P-256 key with `ca`.
fn signed_cert(dir: &Path, name: &str, ca: (&Path, &Path), is_ca: bool) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    let cert = dir.join(format!("{name}.crt"));
    let ext = dir.join(format!("{name}.ext"));
    std::fs::write(
        &ext,
        if is_ca {
            "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,digitalSignature\n"
        } else {
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        },
    )
    .unwrap();
    openssl(&[
        "req",
        "-new",
        "-nodes",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-subj",
        &format!("/CN={name}"),
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        csr.to_str().unwrap(),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        csr.to_str().unwrap(),
        "-CA",
        ca.0.to_str().unwrap(),
        "-CAkey",
        ca.1.to_str().unwrap(),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        ext.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]);
    (cert, key)
}

fn root_ca(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (key, cert) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.crt")),
    );
    openssl(&[
        "req",
        "-x509",
        "-nodes",
        "-days",
        "2",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-subj",
        &format!("/CN={name}"),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]);
    (cert, key)
}

fn der_b64(cert: &Path) -> String {
    let text = std::fs::read_to_string(cert).unwrap();
    let block = registry::auth::der::pem_blocks(&text).unwrap().remove(0);
    base64::engine::general_purpose::STANDARD.encode(block.der)
}

/// cesanta/docker_auth's shape: ES256, the leaf's libtrust kid and an `x5c`
/// chain leaf → intermediate, the bundle holding only the root.
#[tokio::test(flavor = "multi_thread")]
async fn x5c_chains_are_verified_up_to_the_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (root, root_key) = root_ca(d, "root");
    let (inter, inter_key) = signed_cert(d, "intermediate", (&root, &root_key), true);
    let (leaf, leaf_key) = signed_cert(d, "leaf", (&inter, &inter_key), false);
    // A leaf that is no CA cannot vouch for another certificate.
    let (forged, forged_key) = signed_cert(d, "forged", (&leaf, &leaf_key), false);
    let (other_root, other_key) = root_ca(d, "other-root");
    let (stranger, stranger_key) = signed_cert(d, "stranger", (&other_root, &other_key), false);

    let s = server(None, Some(root.clone()), &[]).await;
    let token = |key: &Path, chain: &[&Path]| {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(spki_of_cert(chain[0]).libtrust_kid());
        header.x5c = Some(chain.iter().map(|c| der_b64(c)).collect());
        let encoding = EncodingKey::from_ec_der(&private_der(key));
        jsonwebtoken::encode(&header, &claims(300), &encoding).unwrap()
    };
    for (what, t, want) in [
        (
            "leaf and intermediate",
            token(&leaf_key, &[&leaf, &inter]),
            IN,
        ),
        ("no intermediate", token(&leaf_key, &[&leaf]), OUT),
        (
            "signed by a non-CA leaf",
            token(&forged_key, &[&forged, &leaf, &inter]),
            OUT,
        ),
        ("another root", token(&stranger_key, &[&stranger]), OUT),
        (
            "the leaf's chain, another key",
            token(&stranger_key, &[&leaf, &inter]),
            OUT,
        ),
    ] {
        assert_eq!(status(&s, &t).await, want, "{what}");
    }
}

/// A JWKS endpoint that can be made slow: every read after `slow` is set
/// answers after 5 s. `started` counts reads begun.
struct SlowJwks {
    url: String,
    slow: Arc<std::sync::atomic::AtomicBool>,
    started: tokio::sync::watch::Receiver<usize>,
}

async fn slow_jwks_server(doc: String) -> SlowJwks {
    use std::sync::atomic::{AtomicBool, Ordering};
    let slow = Arc::new(AtomicBool::new(false));
    let (tx, started) = tokio::sync::watch::channel(0usize);
    let tx = Arc::new(tx);
    let (s, d) = (slow.clone(), Arc::new(doc));
    let app = axum::Router::new().route(
        "/certs",
        axum::routing::get(move || {
            let (s, d, tx) = (s.clone(), d.clone(), tx.clone());
            async move {
                tx.send_modify(|n| *n += 1);
                if s.load(Ordering::SeqCst) {
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                }
                ([("content-type", "application/json")], (*d).clone())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    SlowJwks {
        url: format!("http://{addr}/certs"),
        slow,
        started,
    }
}

/// Tokens naming made-up key ids make the registry read its JWKS again;
/// with an issuer that takes 5 s to answer, requests with valid tokens of a
/// known key must not wait for that read.
#[tokio::test(flavor = "multi_thread")]
async fn a_bad_kid_flood_does_not_stall_valid_tokens() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let key = rsa_key(dir.path(), "kc-valid");
    let jwks_srv = slow_jwks_server(jwks(&[&key])).await;
    let s = server(Some(jwks_srv.url.clone()), None, &[]).await;
    let valid = rs256(&key, &key.kid, 300);
    // Ready: the JWKS was read (at start, or at this first use).
    assert_eq!(status(&s, &valid).await, IN);

    jwks_srv
        .slow
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let mut started = jwks_srv.started.clone();
    let reads_before = *started.borrow_and_update();
    let stranger = rsa_key(dir.path(), "made-up");
    let flood = {
        let (base, stranger) = (s.base.clone(), stranger);
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut handles = Vec::new();
            for i in 0..8 {
                let token = rs256(&stranger, &format!("made-up-{i}"), 300);
                let req = client
                    .get(format!("{base}/v2/team/app/tags/list"))
                    .bearer_auth(token)
                    .send();
                handles.push(tokio::spawn(req));
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            for h in handles {
                let r = h.await.unwrap().unwrap();
                assert_eq!(r.status(), 401);
            }
        })
    };
    // The slow read has begun.
    started
        .wait_for(|n| *n > reads_before)
        .await
        .expect("a bad kid makes the registry read its JWKS");

    let mut slowest = Duration::ZERO;
    let begun = Instant::now();
    while begun.elapsed() < Duration::from_secs(3) {
        let start = Instant::now();
        assert_eq!(status(&s, &valid).await, IN);
        let took = start.elapsed();
        slowest = slowest.max(took);
        assert!(
            took < Duration::from_secs(1),
            "a valid token waited {took:?} for the JWKS read"
        );
    }
    eprintln!("slowest valid-token request while the JWKS read took 5 s: {slowest:?}");
    flood.await.unwrap();
}
