//! An external token issuer for the tests, as docker_auth or GitLab run one:
//! a key and self-signed certificate made by openssl, tokens signed ES256
//! with the certificate's libtrust `kid`, and a small HTTP token endpoint
//! (Docker token spec `GET` with Basic credentials) that grants each user
//! only the actions a fixed policy gives it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use registry::auth::der::{self, PublicKey};
use serde_json::{json, Value};

pub fn openssl(args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A key and self-signed certificate made by openssl, as an external
/// issuer (docker_auth, GitLab) has them.
pub fn issuer_cert(dir: &Path, name: &str, newkey: &[&str]) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{name}.key"));
    let cert = dir.join(format!("{name}.crt"));
    let mut args = vec![
        "req",
        "-x509",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=token-issuer",
    ];
    args.extend_from_slice(newkey);
    args.extend([
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]);
    openssl(&args);
    (key, cert)
}

pub fn spki_of_cert(cert: &Path) -> PublicKey {
    let text = std::fs::read_to_string(cert).unwrap();
    let block = der::pem_blocks(&text).unwrap().remove(0);
    PublicKey::from_spki(der::certificate_spki(&block.der).unwrap()).unwrap()
}

pub fn private_der(key: &Path) -> Vec<u8> {
    let text = std::fs::read_to_string(key).unwrap();
    der::pem_blocks(&text).unwrap().remove(0).der
}

/// Users, their passwords and the actions each may have per repository.
pub type Policy = HashMap<&'static str, (&'static str, Vec<(&'static str, Vec<&'static str>)>)>;

struct Issuer {
    key: EncodingKey,
    kid: String,
    issuer: String,
    service: String,
    policy: Policy,
}

/// A running issuer; its server stops with the test's runtime.
pub struct TokenIssuer {
    /// `http://127.0.0.1:<port>/token`, the realm registries point at.
    pub realm: String,
    /// The certificate registries verify its tokens with.
    pub cert: PathBuf,
    pub issuer: String,
    pub service: String,
    _dir: tempfile::TempDir,
}

impl TokenIssuer {
    pub async fn start(issuer: &str, service: &str, policy: Policy) -> TokenIssuer {
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) = issuer_cert(
            dir.path(),
            "issuer",
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
        );
        let state = Arc::new(Issuer {
            key: EncodingKey::from_ec_der(&private_der(&key)),
            kid: spki_of_cert(&cert).libtrust_kid(),
            issuer: issuer.to_owned(),
            service: service.to_owned(),
            policy,
        });
        let app = axum::Router::new()
            .route("/token", axum::routing::get(token))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        TokenIssuer {
            realm: format!("http://{addr}/token"),
            cert,
            issuer: issuer.to_owned(),
            service: service.to_owned(),
            _dir: dir,
        }
    }
}

fn basic_user(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let (user, password) = std::str::from_utf8(&raw).ok()?.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// `GET /token?service=..&scope=..` with Basic credentials: a token with
/// the intersection of the asked and the allowed actions, as the spec says
/// (an empty grant is a token, not an error).
async fn token(
    State(issuer): State<Arc<Issuer>>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let Some((user, password)) = basic_user(&headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let Some((expected, allowed)) = issuer.policy.get(user.as_str()) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    if *expected != password {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let mut access = Vec::new();
    for (_, scope) in query.iter().filter(|(k, _)| k == "scope") {
        let mut parts = scope.splitn(3, ':');
        let (Some(kind), Some(name), Some(actions)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let granted: Vec<&str> = actions
            .split(',')
            .filter(|a| {
                allowed
                    .iter()
                    .any(|(repo, acts)| *repo == name && acts.contains(a))
            })
            .collect();
        access.push(json!({"type": kind, "name": name, "actions": granted}));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims: Value = json!({
        "iss": issuer.issuer,
        "sub": user,
        "aud": issuer.service,
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("{now}-{}", rand_jti()),
        "access": access,
    });
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(issuer.kid.clone());
    let jwt = jsonwebtoken::encode(&header, &claims, &issuer.key).unwrap();
    axum::Json(json!({"token": jwt, "access_token": jwt, "expires_in": 300})).into_response()
}

fn rand_jti() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// `Bearer realm="...",service="...",scope="..."` → its parameters (empty
/// for anything that is not a Bearer challenge).
pub fn parse_challenge(value: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let Some(rest) = value.strip_prefix("Bearer ") else {
        return out;
    };
    let mut chars = rest.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        assert_eq!(chars.next(), Some('"'), "{value}");
        let v: String = chars.by_ref().take_while(|c| *c != '"').collect();
        out.insert(key.trim_start_matches(',').to_owned(), v);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    out
}
