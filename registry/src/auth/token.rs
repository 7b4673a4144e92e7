//! Docker registry tokens (JWT): the signing key (configured, or generated
//! once and persisted), the keys tokens are accepted from (ours, a
//! registry:2 style `rootcertbundle`, extra trusted keys for rotation),
//! issuing access and refresh tokens, and verifying a presented token.
//!
//! Verification checks the signature with a trusted key chosen by the
//! header's `kid` (libtrust fingerprint, what registry:2 and its issuers
//! use) or `x5c` (the leaf certificate must be one of the bundle's), the
//! algorithm against that key's type (so `none` and HS256-with-the-public-key
//! never verify), then `iss`, `aud`, `exp` and `nbf` with a small leeway.
//! Claims are deserialised into strict types: a claim of the wrong type is
//! a refused token, never a missing claim.
//!
//! A verified token is remembered (keyed by its SHA-256) until it expires,
//! so a client presenting the same token for every layer of a pull pays for
//! one signature check.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::signature::KeyPair as _;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use super::access::{Access, Actions, Resource};
use super::der::{self, PrivateKey, PublicKey};

pub use crate::config::TokenConfig;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{key} {path}: {message}")]
    File {
        key: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("auth.token: {0}")]
    Config(String),
}

/// A key tokens are accepted from.
struct TrustedKey {
    /// The IDs a token may name it by: libtrust's (registry:2 and its
    /// issuers), the RFC 7638 thumbprint (go-jose, registry:3), and a
    /// JWKS entry's own `kid` (Keycloak's random IDs).
    kids: Vec<String>,
    /// DER of the certificate it came from, for `x5c` matching.
    cert: Option<Vec<u8>>,
    decoding: DecodingKey,
    algorithms: Vec<Algorithm>,
    /// This registry's own key (`signing_key`, or a previous one in
    /// `trusted_keys`): its tokens' subjects are local users. Keys of
    /// external issuers (`rootcertbundle`, `x5c`, `jwks`) name subjects of
    /// their own, which must never pass for a local user of the same name.
    own: bool,
}

fn algorithms_for(key: &PublicKey) -> Vec<Algorithm> {
    match key {
        PublicKey::P256(_) => vec![Algorithm::ES256],
        PublicKey::Rsa(_) => vec![
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        PublicKey::Ed25519(_) => vec![Algorithm::EdDSA],
    }
}

impl TrustedKey {
    fn new(key: PublicKey, cert: Option<Vec<u8>>) -> TrustedKey {
        let decoding = match &key {
            PublicKey::P256(point) => DecodingKey::from_ec_der(point),
            PublicKey::Rsa(pkcs1) => DecodingKey::from_rsa_der(pkcs1),
            PublicKey::Ed25519(raw) => DecodingKey::from_ed_der(raw),
        };
        TrustedKey {
            kids: vec![key.libtrust_kid(), super::jwk::thumbprint(&key)],
            cert,
            algorithms: algorithms_for(&key),
            decoding,
            own: false,
        }
    }

    fn own(mut self) -> TrustedKey {
        self.own = true;
        self
    }

    /// A JWKS entry: also known by its own `kid`, and limited to its `alg`.
    fn from_jwk(jwk: super::jwk::Jwk) -> TrustedKey {
        let mut key = TrustedKey::new(jwk.key, jwk.cert);
        if let Some(kid) = jwk.kid {
            key.kids.insert(0, kid);
        }
        if let Some(alg) = jwk.alg.as_deref().and_then(|a| a.parse::<Algorithm>().ok()) {
            key.algorithms.retain(|a| *a == alg);
        }
        key
    }

    fn known_as(&self, kid: &str) -> bool {
        self.kids.iter().any(|k| k == kid)
    }
}

/// Where a JWKS comes from, and the keys last read from it. A URL is read
/// at start in the background (retried until it answers), and again when a
/// token names a key it does not hold: at most one read at a time, started
/// at most once a second, on its own task. Tokens of keys already held
/// never wait for a read; a token naming an unknown key waits for the read
/// in flight (at most [`JWKS_WAIT`]).
struct Jwks {
    source: String,
    keys: RwLock<Vec<Arc<TrustedKey>>>,
    reading: Mutex<ReadState>,
    /// Counts finished reads; what a token of an unknown key waits on.
    reads: tokio::sync::watch::Sender<u64>,
}

#[derive(Default)]
struct ReadState {
    running: bool,
    last_start: Option<Instant>,
    /// A read succeeded once (the start-up retries stop).
    loaded: bool,
}

/// Largest JWKS document read.
const JWKS_MAX_BYTES: usize = 1 << 20;
const JWKS_MIN_INTERVAL: Duration = Duration::from_secs(1);
/// How long a token naming an unknown key waits for the JWKS read.
const JWKS_WAIT: Duration = Duration::from_secs(10);
/// Longest pause between start-up attempts to read a JWKS URL.
const JWKS_RETRY_MAX: Duration = Duration::from_secs(60);

impl Jwks {
    fn new(source: String) -> Jwks {
        Jwks {
            source,
            keys: RwLock::new(Vec::new()),
            reading: Mutex::new(ReadState::default()),
            reads: tokio::sync::watch::channel(0).0,
        }
    }

    fn is_url(&self) -> bool {
        self.source.starts_with("http://") || self.source.starts_with("https://")
    }

    /// An `http://` JWKS is accepted on a loopback address only: keys read
    /// over plain HTTP from elsewhere could be anyone's.
    fn check_scheme(source: &str) -> Result<(), String> {
        let Some(rest) = source.strip_prefix("http://") else {
            return Ok(());
        };
        let url = reqwest::Url::parse(source).map_err(|e| format!("{source:?}: {e}"))?;
        let host = url.host_str().unwrap_or("");
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = host.eq_ignore_ascii_case("localhost")
            || bare
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if loopback {
            Ok(())
        } else {
            Err(format!(
                "http://{rest}: a JWKS URL must be https:// (plain http:// only on a loopback address)"
            ))
        }
    }

    async fn read(&self) -> Result<Vec<u8>, String> {
        if !self.is_url() {
            return tokio::fs::read(&self.source)
                .await
                .map_err(|e| e.to_string());
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        let mut response = client
            .get(&self.source)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| e.to_string())?;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > JWKS_MAX_BYTES {
                return Err(format!("larger than {JWKS_MAX_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn install(&self, body: &[u8]) -> Result<usize, String> {
        let (keys, skipped) = super::jwk::parse_set(body)?;
        for why in skipped {
            tracing::warn!(jwks = %self.source, key = %why, "JWKS key skipped");
        }
        let keys: Vec<Arc<TrustedKey>> = keys
            .into_iter()
            .map(|k| Arc::new(TrustedKey::from_jwk(k)))
            .collect();
        let n = keys.len();
        *self.keys.write().unwrap() = keys;
        Ok(n)
    }

    /// Claims the single read: false when one runs, or one started less
    /// than a second ago.
    fn claim(&self) -> bool {
        let mut state = self.reading.lock().unwrap();
        if state.running
            || state
                .last_start
                .is_some_and(|t| t.elapsed() < JWKS_MIN_INTERVAL)
        {
            return false;
        }
        state.running = true;
        state.last_start = Some(Instant::now());
        true
    }

    /// Reads the set (the read claimed by `claim`) and installs it; the
    /// keys held stay when it fails.
    async fn run(&self) -> bool {
        let outcome = match self.read().await {
            Ok(body) => self.install(&body),
            Err(e) => Err(e),
        };
        let ok = outcome.is_ok();
        {
            let mut state = self.reading.lock().unwrap();
            state.running = false;
            state.loaded |= ok;
        }
        self.reads.send_modify(|n| *n += 1);
        match outcome {
            Ok(n) => tracing::info!(jwks = %self.source, keys = n, "JWKS read"),
            // A JWKS server down does not lock out tokens of keys already
            // known.
            Err(e) => tracing::warn!(jwks = %self.source, error = %e, "JWKS could not be read"),
        }
        ok
    }

    /// Starts a read on its own task unless one runs or ran within the
    /// last second; true when a read is in flight now.
    fn refresh_in_background(self: &Arc<Self>) -> bool {
        if self.claim() {
            let me = self.clone();
            tokio::spawn(async move { me.run().await });
            return true;
        }
        self.reading.lock().unwrap().running
    }

    /// The first read of a URL, at start: retried with growing pauses until
    /// it succeeds (or another read did).
    async fn read_until_loaded(self: Arc<Self>) {
        let mut pause = JWKS_MIN_INTERVAL;
        loop {
            if self.reading.lock().unwrap().loaded {
                return;
            }
            if self.claim() && self.run().await {
                return;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(JWKS_RETRY_MAX);
        }
    }

    fn find(&self, kid: &str) -> Option<Arc<TrustedKey>> {
        self.keys
            .read()
            .unwrap()
            .iter()
            .find(|k| k.known_as(kid))
            .cloned()
    }
}

/// The built-in issuer's key.
pub struct SigningKey {
    algorithm: Algorithm,
    encoding: EncodingKey,
    public: PublicKey,
    kid: String,
}

impl SigningKey {
    fn from_private(key: PrivateKey) -> Result<SigningKey, String> {
        let (algorithm, encoding, public) = match &key {
            PrivateKey::P256(pkcs8) => {
                let rng = ring::rand::SystemRandom::new();
                let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
                    &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    pkcs8,
                    &rng,
                )
                .map_err(|e| format!("not a usable P-256 key: {e}"))?;
                (
                    Algorithm::ES256,
                    EncodingKey::from_ec_der(pkcs8),
                    PublicKey::P256(pair.public_key().as_ref().to_vec()),
                )
            }
            PrivateKey::Rsa(pkcs1) => {
                let pair = ring::signature::RsaKeyPair::from_der(pkcs1)
                    .map_err(|e| format!("not a usable RSA key: {e}"))?;
                (
                    Algorithm::RS256,
                    EncodingKey::from_rsa_der(pkcs1),
                    PublicKey::Rsa(pair.public().as_ref().to_vec()),
                )
            }
            PrivateKey::Ed25519(pkcs8) => {
                let pair = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
                    .map_err(|e| format!("not a usable Ed25519 key: {e}"))?;
                (
                    Algorithm::EdDSA,
                    EncodingKey::from_ed_der(pkcs8),
                    PublicKey::Ed25519(pair.public_key().as_ref().to_vec()),
                )
            }
        };
        Ok(SigningKey {
            algorithm,
            encoding,
            kid: public.libtrust_kid(),
            public,
        })
    }

    /// Reads the key at `path`, or generates a P-256 key there if the file
    /// does not exist. Creation never replaces a file: of replicas starting
    /// together on a shared volume, one key wins and all load it.
    pub fn load_or_generate(path: &Path) -> Result<(SigningKey, bool), KeyError> {
        let err = |message: String| KeyError::File {
            key: "auth.token.signing_key",
            path: path.to_owned(),
            message,
        };
        let mut generated = false;
        if !path.exists() {
            let rng = ring::rand::SystemRandom::new();
            let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
                &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &rng,
            )
            .map_err(|e| err(format!("cannot generate a key: {e}")))?;
            let pem = der::pem_encode("PRIVATE KEY", pkcs8.as_ref());
            generated = create_new(path, pem.as_bytes()).map_err(|e| err(e.to_string()))?;
        }
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let blocks = der::pem_blocks(&text).map_err(err)?;
        let block = blocks
            .iter()
            .find(|b| b.label.ends_with("PRIVATE KEY"))
            .ok_or_else(|| err("no PRIVATE KEY block".into()))?;
        let key = der::private_key(block).map_err(err)?;
        Ok((SigningKey::from_private(key).map_err(err)?, generated))
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The public key as a `PUBLIC KEY` PEM block, for external verifiers.
    pub fn public_pem(&self) -> String {
        der::pem_encode("PUBLIC KEY", &self.public.spki())
    }
}

/// Writes `data` to `path` only if nothing is there; returns whether it
/// wrote. The file is complete before it appears (written aside, then
/// hard-linked into place, which fails if the name exists).
fn create_new(path: &Path, data: &[u8]) -> std::io::Result<bool> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut nonce = [0u8; 8];
    rand::fill(&mut nonce);
    let tmp = path.with_extension(format!("tmp-{}", hex::encode(nonce)));
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        match std::fs::hard_link(&tmp, path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

/// Every key in a PEM file: certificates, public keys, private keys.
fn keys_in(path: &Path, key: &'static str) -> Result<Vec<TrustedKey>, KeyError> {
    let err = |message: String| KeyError::File {
        key,
        path: path.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let mut keys = Vec::new();
    for block in der::pem_blocks(&text).map_err(err)? {
        let trusted = match block.label.as_str() {
            "CERTIFICATE" => {
                let spki = der::certificate_spki(&block.der)
                    .ok_or_else(|| err("malformed CERTIFICATE".into()))?;
                let public = PublicKey::from_spki(spki).map_err(err)?;
                TrustedKey::new(public, Some(block.der.clone()))
            }
            "PUBLIC KEY" => TrustedKey::new(PublicKey::from_spki(&block.der).map_err(err)?, None),
            label if label.ends_with("PRIVATE KEY") => {
                let private = der::private_key(&block).map_err(err)?;
                let signing = SigningKey::from_private(private).map_err(err)?;
                TrustedKey::new(signing.public, None)
            }
            _ => continue,
        };
        keys.push(trusted);
    }
    if keys.is_empty() {
        return Err(err("no CERTIFICATE, PUBLIC KEY or PRIVATE KEY block".into()));
    }
    Ok(keys)
}

/// The `aud` claim: one string or several.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, aud: &str) -> bool {
        match self {
            Audience::One(a) => a == aud,
            Audience::Many(list) => list.iter().any(|a| a == aud),
        }
    }
}

/// One entry of the `access` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimAccess {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct AccessClaims {
    iss: String,
    #[serde(default)]
    sub: String,
    aud: Audience,
    exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
    #[serde(default)]
    access: Vec<ClaimAccess>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RefreshClaims {
    iss: String,
    sub: String,
    aud: String,
    exp: i64,
    iat: i64,
    jti: String,
    /// Always "refresh": an access token is never a refresh token.
    typ: String,
    /// Fingerprint of the user's htpasswd entry when issued: a changed
    /// password revokes the user's refresh tokens.
    pwd: String,
}

/// Why a token was refused (for the audit log; clients see only
/// `invalid_token`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("token signed by an unknown key")]
    UnknownKey,
    #[error("bad signature or algorithm")]
    BadSignature,
    #[error("algorithm not in signingalgorithms")]
    AlgorithmNotAllowed,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("wrong audience")]
    WrongAudience,
    #[error("invalid claims")]
    InvalidClaims,
}

impl From<jsonwebtoken::errors::Error> for TokenError {
    fn from(e: jsonwebtoken::errors::Error) -> Self {
        use jsonwebtoken::errors::ErrorKind as K;
        match e.kind() {
            K::InvalidSignature | K::InvalidAlgorithm | K::InvalidAlgorithmName => {
                TokenError::BadSignature
            }
            K::InvalidEcdsaKey | K::InvalidRsaKey(_) | K::InvalidKeyFormat => {
                TokenError::BadSignature
            }
            K::ExpiredSignature => TokenError::Expired,
            K::ImmatureSignature => TokenError::NotYetValid,
            K::InvalidIssuer => TokenError::WrongIssuer,
            K::InvalidAudience => TokenError::WrongAudience,
            K::MissingRequiredClaim(_) | K::Json(_) => TokenError::InvalidClaims,
            _ => TokenError::Malformed,
        }
    }
}

/// What a verified access token allows.
#[derive(Debug)]
pub struct Verified {
    pub subject: String,
    /// The name `[acl]` knows this token's subject by (admins, the
    /// catalog's lists): the subject of a token this registry signed; for
    /// an external issuer's token, `<subject>@<issuer>`, so that no
    /// external user passes for a local one of the same name. None for a
    /// token without a subject.
    pub principal: Option<String>,
    /// Signed by this registry's own key: issued by the built-in endpoint
    /// as the requested scopes ∩ the `[acl]` for `principal`.
    pub local: bool,
    pub expires: i64,
    grants: HashMap<(String, String), Actions>,
}

impl Verified {
    fn new(claims: &AccessClaims, own_key: bool) -> Verified {
        let mut grants: HashMap<(String, String), Actions> = HashMap::new();
        for a in &claims.access {
            let actions = a
                .actions
                .iter()
                .filter_map(|x| Actions::parse_one(x))
                .fold(Actions::NONE, Actions::union);
            let entry = grants.entry((a.kind.clone(), a.name.clone())).or_default();
            *entry = entry.union(actions);
        }
        let principal = match (claims.sub.is_empty(), own_key) {
            (true, _) => None,
            (false, true) => Some(claims.sub.clone()),
            (false, false) => Some(format!("{}@{}", claims.sub, claims.iss)),
        };
        Verified {
            subject: claims.sub.clone(),
            principal,
            local: own_key,
            expires: claims.exp,
            grants,
        }
    }

    /// What the token grants on `resource`.
    pub fn actions(&self, resource: &Resource) -> Actions {
        let key = match resource {
            Resource::Repository(name) => ("repository".to_owned(), name.to_string()),
            Resource::Catalog => ("registry".to_owned(), "catalog".to_owned()),
        };
        self.grants.get(&key).copied().unwrap_or_default()
    }

    pub fn covers(&self, access: &Access) -> bool {
        self.actions(&access.resource).contains(access.actions)
    }
}

/// A freshly issued token.
pub struct Issued {
    pub token: String,
    pub expires_in: u64,
    pub issued_at: SystemTime,
}

const CACHE_MAX: usize = 10_000;

pub struct TokenAuth {
    pub config: TokenConfig,
    signing: Option<SigningKey>,
    trusted: Vec<Arc<TrustedKey>>,
    /// DER of the rootcertbundle's certificates: the roots `x5c` chains
    /// must lead to.
    roots: Vec<Vec<u8>>,
    jwks: Option<Arc<Jwks>>,
    /// `signingalgorithms`; empty: every algorithm that fits the key.
    allowed: Vec<Algorithm>,
    /// Verified tokens by their SHA-256, bounded (`quick_cache` evicts the
    /// least used; a flood of new tokens cannot grow it or empty it of the
    /// hot ones), each still checked for expiry when it is found.
    cache: quick_cache::sync::Cache<[u8; 32], Arc<Verified>>,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn random_id() -> String {
    let mut raw = [0u8; 16];
    rand::fill(&mut raw);
    hex::encode(raw)
}

impl TokenAuth {
    /// Loads (or generates) the signing key when the built-in endpoint is
    /// on, and every trusted key. Returns whether a key was generated.
    pub fn open(config: &TokenConfig) -> Result<(TokenAuth, bool), KeyError> {
        if config.service.is_empty() {
            return Err(KeyError::Config("service must not be empty".into()));
        }
        if config.issuer.is_empty() {
            return Err(KeyError::Config("issuer must not be empty".into()));
        }
        let mut trusted = Vec::new();
        let mut signing = None;
        let mut generated = false;
        if config.endpoint_enabled() {
            let (key, fresh) = SigningKey::load_or_generate(&config.signing_key)?;
            generated = fresh;
            trusted.push(TrustedKey::new(key.public.clone(), None).own());
            signing = Some(key);
        }
        if let Some(bundle) = &config.rootcertbundle {
            trusted.extend(keys_in(bundle, "auth.token.rootcertbundle")?);
        }
        let roots = trusted.iter().filter_map(|k| k.cert.clone()).collect();
        for path in &config.trusted_keys {
            // With the built-in endpoint on, previous keys of this
            // registry's own issuer (key rotation); without it, keys of an
            // external issuer.
            let own = config.endpoint_enabled();
            trusted.extend(
                keys_in(path, "auth.token.trusted_keys")?
                    .into_iter()
                    .map(|k| if own { k.own() } else { k }),
            );
        }
        let mut allowed = Vec::new();
        for name in &config.signingalgorithms {
            match name.parse::<Algorithm>() {
                Ok(a) if !matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) => {
                    allowed.push(a)
                }
                _ => {
                    return Err(KeyError::Config(format!(
                        "signingalgorithms: {name:?} is not one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, EdDSA"
                    )))
                }
            }
        }
        if let Some(source) = &config.jwks {
            Jwks::check_scheme(source).map_err(KeyError::Config)?;
        }
        let jwks = config
            .jwks
            .as_ref()
            .map(|source| Arc::new(Jwks::new(source.clone())));
        if let Some(j) = jwks.as_ref().filter(|j| !j.is_url()) {
            // A file is read now, so a wrong path fails the start.
            let err = |message: String| KeyError::File {
                key: "auth.token.jwks",
                path: PathBuf::from(&j.source),
                message,
            };
            let body = std::fs::read(&j.source).map_err(|e| err(e.to_string()))?;
            j.install(&body).map_err(err)?;
            j.reading.lock().unwrap().loaded = true;
        }
        if let Some(j) = jwks.as_ref().filter(|j| j.is_url()) {
            // A URL is read now, in the background: an issuer down at start
            // is retried, and tokens of other trusted keys work meanwhile.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(j.clone().read_until_loaded());
            }
        }
        let trusted: Vec<Arc<TrustedKey>> = trusted.into_iter().map(Arc::new).collect();
        if trusted.is_empty() && jwks.is_none() {
            return Err(KeyError::Config(
                "no key to verify tokens with: set rootcertbundle (an external issuer) or enable the built-in endpoint"
                    .into(),
            ));
        }
        Ok((
            TokenAuth {
                config: config.clone(),
                signing,
                trusted,
                roots,
                jwks,
                allowed,
                cache: quick_cache::sync::Cache::new(CACHE_MAX),
            },
            generated,
        ))
    }

    pub fn signing_key(&self) -> Option<&SigningKey> {
        self.signing.as_ref()
    }

    /// The key IDs tokens are accepted from (for the start-up log).
    pub fn trusted_kids(&self) -> Vec<&str> {
        self.trusted.iter().map(|k| k.kids[0].as_str()).collect()
    }

    /// Before verifying `token`: when it names a key ID no key has and a
    /// JWKS is configured, read the JWKS again (a rotation at the issuer)
    /// in the background and wait for that read. Tokens of keys already
    /// held return at once, whatever read is in flight.
    pub async fn refresh_for(&self, token: Option<&str>) {
        let (Some(jwks), Some(token)) = (&self.jwks, token) else {
            return;
        };
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return;
        };
        let Some(kid) = header.kid.filter(|_| header.x5c.is_none()) else {
            return;
        };
        if jwks.find(&kid).is_some() || self.trusted.iter().any(|k| k.known_as(&kid)) {
            return;
        }
        let mut done = jwks.reads.subscribe();
        if jwks.refresh_in_background() {
            let _ = tokio::time::timeout(JWKS_WAIT, done.changed()).await;
        }
    }

    /// The key a token's header names: by `x5c` (a certificate of the
    /// bundle, or a chain up to one), else by `kid`.
    fn key_for(&self, header: &Header) -> Result<Arc<TrustedKey>, TokenError> {
        if let Some(chain) = header.x5c.as_ref().filter(|c| !c.is_empty()) {
            let chain = super::x5c::decode(chain).ok_or(TokenError::Malformed)?;
            if let Some(k) = self
                .trusted
                .iter()
                .find(|k| k.cert.as_deref() == Some(&chain[0][..]))
            {
                return Ok(k.clone());
            }
            if !super::x5c::verify(&chain, &self.roots) {
                return Err(TokenError::UnknownKey);
            }
            let spki = der::certificate_spki(&chain[0]).ok_or(TokenError::Malformed)?;
            let key = PublicKey::from_spki(spki).map_err(|_| TokenError::UnknownKey)?;
            return Ok(Arc::new(TrustedKey::new(key, Some(chain[0].clone()))));
        }
        let kid = header.kid.as_deref().ok_or(TokenError::UnknownKey)?;
        self.trusted
            .iter()
            .find(|k| k.known_as(kid))
            .cloned()
            .or_else(|| self.jwks.as_ref().and_then(|j| j.find(kid)))
            .ok_or(TokenError::UnknownKey)
    }

    fn refresh_audience(&self) -> String {
        format!("{}#refresh", self.config.service)
    }

    fn sign<T: Serialize>(&self, claims: &T) -> Result<String, String> {
        let key = self
            .signing
            .as_ref()
            .ok_or("the built-in token endpoint is disabled")?;
        let mut header = Header::new(key.algorithm);
        header.kid = Some(key.kid.clone());
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, claims, &key.encoding).map_err(|e| e.to_string())
    }

    /// An access token for `subject` (empty for anonymous) granting `access`.
    pub fn issue(&self, subject: &str, access: Vec<ClaimAccess>) -> Result<Issued, String> {
        let issued_at = SystemTime::now();
        let iat = now();
        let expires_in = self.config.expiry_secs;
        let claims = AccessClaims {
            iss: self.config.issuer.clone(),
            sub: subject.to_owned(),
            aud: Audience::One(self.config.service.clone()),
            exp: iat + expires_in as i64,
            // registry:2's own issuers backdate nbf a little for clock skew.
            nbf: Some(iat - 10),
            iat: Some(iat),
            jti: Some(random_id()),
            access,
        };
        Ok(Issued {
            token: self.sign(&claims)?,
            expires_in,
            issued_at,
        })
    }

    /// A refresh token for `subject`, bound to its htpasswd entry.
    pub fn issue_refresh(&self, subject: &str, fingerprint: &str) -> Result<String, String> {
        let iat = now();
        self.sign(&RefreshClaims {
            iss: self.config.issuer.clone(),
            sub: subject.to_owned(),
            aud: self.refresh_audience(),
            exp: iat + self.config.refresh_expiry_secs as i64,
            iat,
            jti: random_id(),
            typ: "refresh".into(),
            pwd: fingerprint.to_owned(),
        })
    }

    /// Checks a refresh token (signed by a trusted key: ours, or the
    /// previous one during a rotation); returns the subject and its
    /// htpasswd-entry fingerprint.
    pub fn verify_refresh(&self, token: &str) -> Result<(String, String), TokenError> {
        if self.signing.is_none() {
            return Err(TokenError::UnknownKey);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        let kid = header.kid.as_deref().ok_or(TokenError::UnknownKey)?;
        let trusted = self
            .trusted
            .iter()
            .find(|k| k.known_as(kid))
            .ok_or(TokenError::UnknownKey)?;
        let claims: RefreshClaims =
            self.decode(token, trusted, &self.refresh_audience(), header.alg)?;
        if claims.typ != "refresh" || claims.sub.is_empty() {
            return Err(TokenError::InvalidClaims);
        }
        Ok((claims.sub, claims.pwd))
    }

    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        key: &TrustedKey,
        audience: &str,
        alg: Algorithm,
    ) -> Result<T, TokenError> {
        if !key.algorithms.contains(&alg) {
            return Err(TokenError::BadSignature);
        }
        if !self.allowed.is_empty() && !self.allowed.contains(&alg) {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        let mut validation = Validation::new(alg);
        validation.algorithms = vec![alg];
        validation.leeway = self.config.leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_audience(&[audience]);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<T>(token, &key.decoding, &validation)?;
        Ok(data.claims)
    }

    /// Verifies an access token presented to the registry.
    pub fn verify(&self, token: &str) -> Result<Arc<Verified>, TokenError> {
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let t = now();
        let leeway = self.config.leeway_secs as i64;
        if let Some(v) = self.cache.get(&digest) {
            if t <= v.expires.saturating_add(leeway) {
                return Ok(v);
            }
            self.cache.remove(&digest);
        }
        let verified = Arc::new(self.verify_uncached(token)?);
        self.cache.insert(digest, verified.clone());
        Ok(verified)
    }

    /// The full check, without the cache (the benchmark measures this).
    pub fn verify_uncached(&self, token: &str) -> Result<Verified, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidAlgorithmName => TokenError::BadSignature,
            _ => TokenError::Malformed,
        })?;
        let key = self.key_for(&header)?;
        let claims: AccessClaims = self.decode(token, &key, &self.config.service, header.alg)?;
        // Belt and braces over the library's checks, on the strictly typed
        // claims.
        let t = now();
        let leeway = self.config.leeway_secs as i64;
        if claims.iss != self.config.issuer {
            return Err(TokenError::WrongIssuer);
        }
        if !claims.aud.contains(&self.config.service) {
            return Err(TokenError::WrongAudience);
        }
        // Saturating: an issuer's exp near i64::MAX or negative nbf (the
        // library ignores an nbf that is not a u64) must not overflow.
        if claims.exp.saturating_add(leeway) < t {
            return Err(TokenError::Expired);
        }
        if claims.nbf.is_some_and(|nbf| nbf.saturating_sub(leeway) > t) {
            return Err(TokenError::NotYetValid);
        }
        Ok(Verified::new(&claims, key.own))
    }

    /// How long an access token lives.
    pub fn expiry(&self) -> Duration {
        Duration::from_secs(self.config.expiry_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> TokenConfig {
        TokenConfig {
            signing_key: dir.join("keys/signing.pem"),
            ..Default::default()
        }
    }

    #[test]
    fn a_plain_http_jwks_url_off_loopback_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path());
        c.jwks = Some("http://idp.example.com/certs".into());
        let err = TokenAuth::open(&c).err().expect("http:// JWKS refused");
        assert!(err.to_string().contains("https://"), "{err}");
        for ok in [
            "http://127.0.0.1:8080/certs",
            "http://localhost/certs",
            "http://[::1]:9/certs",
            "https://idp.example.com/certs",
        ] {
            c.jwks = Some(ok.into());
            assert!(TokenAuth::open(&c).is_ok(), "{ok}");
        }
    }

    fn repo(name: &str, actions: &[&str]) -> ClaimAccess {
        ClaimAccess {
            kind: "repository".into(),
            name: name.into(),
            actions: actions.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// fuzz/fuzz_targets/jwt.rs: `exp + leeway` and `nbf - leeway`
    /// overflowed (a panic with overflow checks, a wrapped comparison
    /// without) on a validly signed token with exp near i64::MAX or a
    /// negative nbf, which jsonwebtoken leaves to us.
    #[test]
    fn extreme_exp_and_nbf_do_not_overflow() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, _) = TokenAuth::open(&config(dir.path())).unwrap();
        let claims = |exp: i64, nbf: Option<i64>| AccessClaims {
            iss: auth.config.issuer.clone(),
            sub: "alice".into(),
            aud: Audience::One(auth.config.service.clone()),
            exp,
            nbf,
            iat: None,
            jti: None,
            access: vec![repo("a", &["pull"])],
        };
        let forever = auth.sign(&claims(i64::MAX, None)).unwrap();
        assert_eq!(auth.verify(&forever).unwrap().expires, i64::MAX);
        // Again, from the cache.
        assert_eq!(auth.verify(&forever).unwrap().expires, i64::MAX);
        let early = auth.sign(&claims(now() + 300, Some(i64::MIN))).unwrap();
        assert!(auth.verify(&early).is_ok());
        let late = auth.sign(&claims(i64::MAX, Some(i64::MAX))).unwrap();
        assert_eq!(auth.verify(&late).unwrap_err(), TokenError::NotYetValid);
    }

    #[test]
    fn generated_key_persists_and_verifies_its_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, generated) = TokenAuth::open(&config(dir.path())).unwrap();
        assert!(generated);
        let issued = auth.issue("alice", vec![repo("a/b", &["pull"])]).unwrap();
        let v = auth.verify(&issued.token).unwrap();
        assert_eq!(v.subject, "alice");
        let a = Access {
            resource: Resource::Repository("a/b".parse().unwrap()),
            actions: Actions::PULL,
        };
        assert!(v.covers(&a));
        assert!(!v.covers(&Access {
            actions: Actions::PUSH,
            ..a.clone()
        }));
        // A second instance on the same file (a restart, a replica) has the
        // same key: it accepts the first one's token.
        let (again, generated) = TokenAuth::open(&config(dir.path())).unwrap();
        assert!(!generated);
        assert!(again.verify_uncached(&issued.token).is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("keys/signing.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "key file must not be group/other readable");
        }
    }

    #[test]
    fn refresh_tokens_are_not_access_tokens_and_vice_versa() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, _) = TokenAuth::open(&config(dir.path())).unwrap();
        let refresh = auth.issue_refresh("alice", "fp").unwrap();
        assert_eq!(
            auth.verify_refresh(&refresh).unwrap(),
            ("alice".to_owned(), "fp".to_owned())
        );
        assert_eq!(
            auth.verify_uncached(&refresh).unwrap_err(),
            TokenError::WrongAudience
        );
        let access = auth.issue("alice", vec![]).unwrap();
        assert!(auth.verify_refresh(&access.token).is_err());
    }

    #[test]
    fn create_new_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        assert!(create_new(&p, b"one").unwrap());
        assert!(!create_new(&p, b"two").unwrap());
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
