//! Form-login sessions: a cookie signed with HMAC-SHA256 under a key derived
//! from `http.secret` (shared by replicas; a random key per process when
//! unset, so sessions then end with the process), CSRF tokens derived from
//! the session (or, before login, from a random cookie), and logout.
//!
//! The cookie carries `expiry:nonce:fingerprint:user`. The fingerprint is
//! that of the user's htpasswd entry, so changing or removing the password
//! ends the user's sessions at once. Logout revokes the nonce in this
//! process until the cookie would have expired anyway.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{KeyInit, Mac};

use crate::auth::credentials::constant_time_eq;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

pub const SESSION_COOKIE: &str = "registry_session";
/// Before login: the random value the login form's CSRF token is bound to.
pub const LOGIN_COOKIE: &str = "registry_login";
/// How long a session lasts (not extended by use).
pub const SESSION_TTL: Duration = Duration::from_secs(3600);

/// A verified session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    nonce: String,
    expires: u64,
}

pub struct Sessions {
    key: [u8; 32],
    /// Cookies get `Secure` when the listener is TLS.
    pub secure: bool,
    /// Logged-out nonces → their expiry (pruned as they pass).
    revoked: Mutex<HashMap<String, u64>>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn random_hex() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}

impl Sessions {
    pub fn new(secret: Option<&str>, secure: bool) -> Sessions {
        let key = match secret {
            Some(s) => {
                let mut mac = HmacSha256::new_from_slice(s.as_bytes()).expect("any key length");
                mac.update(b"registry ui session key");
                mac.finalize().into_bytes().into()
            }
            None => rand::random(),
        };
        Sessions {
            key,
            secure,
            revoked: Mutex::default(),
        }
    }

    fn mac(&self, purpose: &str, data: &str) -> Vec<u8> {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("any key length");
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(data.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// A new session cookie value for `user` whose htpasswd entry has
    /// `fingerprint`.
    pub fn issue(&self, user: &str, fingerprint: &str) -> String {
        let expires = now() + SESSION_TTL.as_secs();
        let payload = format!("{expires}:{}:{fingerprint}:{user}", random_hex());
        let tag = self.mac("session", &payload);
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// The session a cookie value holds, if its signature is ours, it has
    /// not expired or been logged out, and `fingerprint(user)` still gives
    /// the fingerprint it was issued for.
    pub fn verify(
        &self,
        cookie: &str,
        fingerprint: impl Fn(&str) -> Option<String>,
    ) -> Option<Session> {
        let (payload, tag) = cookie.split_once('.')?;
        let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        if !constant_time_eq(&tag, &self.mac("session", &payload)) {
            return None;
        }
        let mut fields = payload.splitn(4, ':');
        let expires: u64 = fields.next()?.parse().ok()?;
        let nonce = fields.next()?.to_owned();
        let issued_for = fields.next()?;
        let user = fields.next()?.to_owned();
        if expires <= now() || self.revoked.lock().unwrap().contains_key(&nonce) {
            return None;
        }
        if fingerprint(&user).as_deref() != Some(issued_for) {
            return None;
        }
        Some(Session {
            user,
            nonce,
            expires,
        })
    }

    /// Ends `session` (in this process; other replicas see the cookie
    /// cleared by the browser, and the fingerprint ends it everywhere when
    /// the password changes).
    pub fn revoke(&self, session: &Session) {
        let mut revoked = self.revoked.lock().unwrap();
        let t = now();
        revoked.retain(|_, expires| *expires > t);
        revoked.insert(session.nonce.clone(), session.expires);
    }

    /// The CSRF token of a logged-in session's forms.
    pub fn csrf(&self, session: &Session) -> String {
        hex::encode(self.mac("csrf", &session.nonce))
    }

    /// The CSRF token of an open registry's forms (auth `none`: no
    /// sessions), constant per key; other sites cannot read it.
    pub fn open_csrf(&self) -> String {
        hex::encode(self.mac("open", ""))
    }

    /// A fresh value for the login cookie.
    pub fn login_nonce(&self) -> String {
        random_hex()
    }

    /// The CSRF token of the login form, bound to the login cookie.
    pub fn login_csrf(&self, nonce: &str) -> String {
        hex::encode(self.mac("login", nonce))
    }

    pub fn csrf_ok(expected: &str, given: &str) -> bool {
        !given.is_empty() && constant_time_eq(expected.as_bytes(), given.as_bytes())
    }

    /// A `Set-Cookie` value: HttpOnly, SameSite=Strict, path `/ui`, Secure
    /// under TLS; `max_age` 0 clears it.
    pub fn cookie(&self, name: &str, value: &str, max_age: Option<u64>) -> String {
        let mut c = format!("{name}={value}; Path=/ui; HttpOnly; SameSite=Strict");
        if let Some(age) = max_age {
            c.push_str(&format!("; Max-Age={age}"));
        }
        if self.secure {
            c.push_str("; Secure");
        }
        c
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_verify_expire_and_revoke() {
        let s = Sessions::new(Some("shared"), false);
        let fp = |u: &str| (u == "alice").then(|| "fp1".to_owned());
        let c = s.issue("alice", "fp1");
        let session = s.verify(&c, fp).unwrap();
        assert_eq!(session.user, "alice");
        // Another replica with the same secret accepts it; a different
        // secret does not.
        assert!(Sessions::new(Some("shared"), false)
            .verify(&c, fp)
            .is_some());
        assert!(Sessions::new(Some("other"), false).verify(&c, fp).is_none());
        assert!(Sessions::new(None, false).verify(&c, fp).is_none());
        // A changed password (fingerprint) ends it.
        assert!(s.verify(&c, |_| Some("fp2".into())).is_none());
        // Tampering with the user breaks the signature.
        let (payload, tag) = c.split_once('.').unwrap();
        let text = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        let forged = URL_SAFE_NO_PAD.encode(text.replace(":alice", ":root"));
        assert!(s
            .verify(&format!("{forged}.{tag}"), |_| Some("fp1".into()))
            .is_none());
        // CSRF tokens are per session.
        let other = s.verify(&s.issue("alice", "fp1"), fp).unwrap();
        assert_ne!(s.csrf(&session), s.csrf(&other));
        s.revoke(&session);
        assert!(s.verify(&c, fp).is_none());
        assert!(s.verify("garbage", fp).is_none());
    }

    #[test]
    fn cookies() {
        assert_eq!(
            cookie_value("a=1; registry_session=x.y", SESSION_COOKIE),
            Some("x.y")
        );
        assert_eq!(cookie_value("a=1", SESSION_COOKIE), None);
        let s = Sessions::new(None, true);
        assert_eq!(
            s.cookie("n", "v", Some(0)),
            "n=v; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0; Secure"
        );
    }
}
