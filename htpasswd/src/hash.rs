//! Password hashes: making argon2id and bcrypt ones, recognising the schemes
//! found in htpasswd files, and verifying the ones we support.

use std::fmt;
use std::str::FromStr;

use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, PasswordHasher, Version};

/// Cost `htpasswd -B` uses when `-C` is not given. Apache's default is 5,
/// which was cheap already in 2012; 10 costs ~50–80 ms per verification here,
/// affordable because the registry caches successful logins.
pub const DEFAULT_BCRYPT_COST: u32 = 10;

/// Bcrypt costs the format can express.
pub const BCRYPT_COSTS: std::ops::RangeInclusive<u32> = 4..=31;

/// Bcrypt reads at most this many bytes of a password; the rest is ignored.
pub const BCRYPT_MAX_PASSWORD_LEN: usize = 72;

/// Why a bcrypt hash could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    #[error("bcrypt cost {0} is outside 4..=31")]
    Cost(u32),
    #[error(
        "password is {0} bytes long; bcrypt uses at most 72 and would silently ignore the rest"
    )]
    PasswordTooLong(usize),
    #[error("cannot generate a salt: {0}")]
    Random(String),
}

/// Hashes `password` as argon2id with the argon2 crate's defaults
/// (m=19456 KiB, t=2, p=1, OWASP's recommendation) and a random salt.
///
/// # Panics
/// When the operating system's random number generator fails.
pub fn hash_argon2id(password: &str) -> String {
    Argon2::default()
        .hash_password(password.as_bytes())
        .expect("argon2id with default parameters only fails when the OS RNG does")
        .to_string()
}

/// Hashes `password` with bcrypt at `cost`, with the `$2y$` prefix that
/// Apache's `htpasswd -B` writes.
///
/// Passwords longer than 72 bytes are refused rather than silently truncated.
pub fn hash_bcrypt(password: &str, cost: u32) -> Result<String, HashError> {
    if !BCRYPT_COSTS.contains(&cost) {
        return Err(HashError::Cost(cost));
    }
    if password.len() > BCRYPT_MAX_PASSWORD_LEN {
        return Err(HashError::PasswordTooLong(password.len()));
    }
    let parts = bcrypt::hash_with_result(password, cost).map_err(|e| match e {
        bcrypt::BcryptError::CostNotAllowed(cost) => HashError::Cost(cost),
        other => HashError::Random(other.to_string()),
    })?;
    Ok(parts.format_for_version(bcrypt::Version::TwoY))
}

/// Whether `password` matches `hash` (argon2 PHC string or bcrypt
/// `$2y$`/`$2b$`/`$2a$`). Malformed hashes and other schemes never match.
pub fn verify_hash(hash: &str, password: &str) -> bool {
    match Scheme::classify(hash) {
        Ok(Scheme::Supported(hash)) => hash.verify(password),
        Ok(Scheme::Unsupported(_)) | Err(_) => false,
    }
}

/// A hash we can verify, parsed once when the file is read.
#[derive(Clone)]
pub(crate) enum Hash {
    // Boxed: a parsed PHC string is ~300 bytes, bcrypt needs 24.
    Argon2(Box<PasswordHash>),
    Bcrypt(String),
}

impl Hash {
    /// Verifies with a temporary working area (see [`WorkArea`]).
    pub(crate) fn verify(&self, password: &str) -> bool {
        self.verify_in(password, &mut WorkArea::new())
    }

    /// Verifies `password`, letting argon2 work in `area` instead of
    /// allocating its memory (19 MiB by default) for this one call.
    pub(crate) fn verify_in(&self, password: &str, area: &mut WorkArea) -> bool {
        match self {
            Hash::Argon2(hash) => verify_argon2(hash, password.as_bytes(), area),
            Hash::Bcrypt(hash) => bcrypt::verify(password, hash).unwrap_or(false),
        }
    }
}

/// The memory argon2 fills while it verifies, kept by the caller from one
/// verification to the next.
///
/// `Argon2::verify_password` allocates m KiB (19 MiB by default), 64-byte
/// aligned, on every call and frees it after. glibc serves such aligned
/// requests from the heap and, measured on the registry, did not reuse the
/// freed areas: the heap grew by an area per failed login, so a login storm
/// bought memory without a password. Here the area is its own anonymous
/// mapping: reused for as long as the caller keeps it, and handed back to
/// the kernel, whole, when it is dropped. It grows to the largest m it has
/// been used for; argon2 overwrites every block before reading it, so
/// nothing needs clearing between uses.
#[derive(Default)]
pub struct WorkArea {
    map: Option<memmap2::MmapMut>,
}

impl WorkArea {
    pub fn new() -> WorkArea {
        WorkArea::default()
    }

    /// Bytes held (0 until the first argon2 verification).
    pub fn bytes(&self) -> usize {
        self.map.as_ref().map_or(0, |m| m.len())
    }

    /// `count` blocks, or `None` when the kernel refuses the memory.
    fn blocks(&mut self, count: usize) -> Option<&mut [Block]> {
        let bytes = count.checked_mul(Block::SIZE)?;
        if self.bytes() < bytes {
            self.map = None;
            self.map = Some(memmap2::MmapMut::map_anon(bytes).ok()?);
        }
        let map = self.map.as_mut()?;
        // SAFETY: a Block is 128 u64s (any bit pattern is a valid Block);
        // the mapping is page-aligned, so `align_to_mut` leaves no prefix.
        let (prefix, blocks, _) = unsafe { map.align_to_mut::<Block>() };
        if !prefix.is_empty() || blocks.len() < count {
            return None;
        }
        Some(&mut blocks[..count])
    }
}

/// The hash's own algorithm, version and parameters are used, not those of
/// `Argon2::default()`. All were checked when the file was parsed; anything
/// that still fails to compute does not match.
fn verify_argon2(hash: &PasswordHash, password: &[u8], area: &mut WorkArea) -> bool {
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let Ok(params) = Params::try_from(hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm.as_str()) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from).transpose() {
        Ok(version) => version.unwrap_or_default(),
        Err(_) => return false,
    };
    let Some(blocks) = area.blocks(params.block_count()) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    let argon2 = Argon2::new(algorithm, version, params);
    if argon2
        .hash_password_into_with_memory(password, salt, &mut out, blocks)
        .is_err()
    {
        return false;
    }
    constant_time_eq(&out, expected.as_bytes())
}

/// Compares in time independent of where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hashes are offline-crackable; keep them out of logs.
        match self {
            Hash::Argon2(hash) => write!(f, "Argon2({})", hash.algorithm),
            Hash::Bcrypt(_) => f.write_str("Bcrypt"),
        }
    }
}

/// What the hash field of an htpasswd line holds.
#[derive(Debug)]
pub(crate) enum Scheme {
    Supported(Hash),
    /// A scheme we recognise but do not verify, by name.
    Unsupported(&'static str),
}

/// A hash that claims a supported scheme but cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {scheme} hash: {reason}")]
pub struct MalformedHash {
    pub scheme: &'static str,
    pub reason: String,
}

impl Scheme {
    pub(crate) fn classify(hash: &str) -> Result<Scheme, MalformedHash> {
        if ["$argon2id$", "$argon2i$", "$argon2d$"]
            .iter()
            .any(|prefix| hash.starts_with(prefix))
        {
            return parse_argon2(hash).map(|h| Scheme::Supported(Hash::Argon2(Box::new(h))));
        }
        if ["$2y$", "$2b$", "$2a$"]
            .iter()
            .any(|prefix| hash.starts_with(prefix))
        {
            return parse_bcrypt(hash).map(|()| Scheme::Supported(Hash::Bcrypt(hash.to_owned())));
        }
        Ok(Scheme::Unsupported(unsupported_name(hash)))
    }
}

fn parse_argon2(hash: &str) -> Result<PasswordHash, MalformedHash> {
    let malformed = |reason: String| MalformedHash {
        scheme: "argon2",
        reason,
    };
    let parsed = PasswordHash::new(hash).map_err(|e| malformed(e.to_string()))?;
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err(malformed("salt or hash missing".into()));
    }
    // Checked here so that a bad m/t/p shows up as a line error when the file
    // is loaded instead of as a login that can never succeed.
    argon2::Params::try_from(&parsed).map_err(|e| malformed(e.to_string()))?;
    Ok(parsed)
}

fn parse_bcrypt(hash: &str) -> Result<(), MalformedHash> {
    let malformed = |reason: String| MalformedHash {
        scheme: "bcrypt",
        reason,
    };
    let parts = bcrypt::HashParts::from_str(hash).map_err(|e| malformed(e.to_string()))?;
    if !BCRYPT_COSTS.contains(&parts.get_cost()) {
        return Err(malformed(format!(
            "cost {} is outside 4..=31",
            parts.get_cost()
        )));
    }
    Ok(())
}

/// Names the schemes Apache's htpasswd and others write that we do not verify.
fn unsupported_name(hash: &str) -> &'static str {
    const PREFIXES: [(&str, &str); 6] = [
        ("$apr1$", "apr1 MD5"),
        ("{SHA}", "SHA-1"),
        ("$1$", "MD5 crypt"),
        ("$5$", "SHA-256 crypt"),
        ("$6$", "SHA-512 crypt"),
        // crypt_blowfish's marker for hashes made by its sign-extension bug.
        ("$2x$", "bcrypt $2x$"),
    ];
    if let Some((_, name)) = PREFIXES.iter().find(|(p, _)| hash.starts_with(p)) {
        return name;
    }
    if hash.starts_with('$') {
        return "unknown";
    }
    // Apache tells DES crypt from plain text the same way: by shape.
    let crypt_alphabet = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '/';
    if hash.len() == 13 && hash.chars().all(crypt_alphabet) {
        "crypt"
    } else {
        "plain"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9106 / reference implementation vector: "password", salt "somesalt".
    const ARGON2ID_REFERENCE: &str =
        "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4";
    /// Openwall crypt_blowfish test vector for "U*U", cost 5 like `htpasswd -B`.
    const BCRYPT_OPENWALL: &str = "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW";

    #[test]
    fn argon2id_roundtrip_uses_default_parameters() {
        let hash = hash_argon2id("s3cret");
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify_hash(&hash, "s3cret"));
        assert!(!verify_hash(&hash, "s3cret "));
        assert_ne!(hash, hash_argon2id("s3cret"), "salt must be random");
    }

    #[test]
    fn one_work_area_serves_many_verifications_of_any_size() {
        let mut area = WorkArea::new();
        assert_eq!(area.bytes(), 0);
        let Ok(Scheme::Supported(small)) = Scheme::classify(ARGON2ID_REFERENCE) else {
            panic!("reference vector must parse");
        };
        assert!(small.verify_in("password", &mut area));
        assert_eq!(area.bytes(), 256 * 1024, "m=256 KiB");
        let Ok(Scheme::Supported(big)) = Scheme::classify(&hash_argon2id("s3cret")) else {
            panic!("a generated hash must parse");
        };
        for _ in 0..3 {
            assert!(big.verify_in("s3cret", &mut area));
            assert!(!big.verify_in("s3cret!", &mut area));
        }
        assert_eq!(area.bytes(), 19456 * 1024, "grown to the largest m, once");
        // A smaller hash after a bigger one: the area is used, not replaced,
        // and what the bigger one left in it does not change the result.
        assert!(small.verify_in("password", &mut area));
        assert!(!small.verify_in("Password", &mut area));
        assert_eq!(area.bytes(), 19456 * 1024);
        let bcrypt = Hash::Bcrypt(hash_bcrypt("s3cret", 4).unwrap());
        assert!(bcrypt.verify_in("s3cret", &mut area));
    }

    #[test]
    fn argon2_variants_verify_with_their_own_algorithm() {
        // argon2i and argon2d made by Debian's argon2 (the reference
        // implementation) for "password", "somesalt", m=256, t=2, p=1, v=19.
        let cases = [
            "$argon2i$v=19$m=256,t=2,p=1$c29tZXNhbHQ$iekCn0Y3spW+sCcFanM2xBT63UP2sghkUoHLIUpWRS8",
            "$argon2d$v=19$m=256,t=2,p=1$c29tZXNhbHQ$JcTui6RIBUtJ78gE5Hi52CO+H5vS6Z9R1uxAB6OhUB8",
            ARGON2ID_REFERENCE,
        ];
        for hash in cases {
            assert!(verify_hash(hash, "password"), "{hash}");
            assert!(!verify_hash(hash, "passwore"), "{hash}");
        }
    }

    #[test]
    fn argon2id_reference_vector() {
        assert!(verify_hash(ARGON2ID_REFERENCE, "password"));
        assert!(!verify_hash(ARGON2ID_REFERENCE, "Password"));
    }

    #[test]
    fn bcrypt_writes_2y_and_verifies() {
        let hash = hash_bcrypt("s3cret", 4).unwrap();
        assert!(hash.starts_with("$2y$04$"), "{hash}");
        assert_eq!(hash.len(), 60);
        assert!(verify_hash(&hash, "s3cret"));
        assert!(!verify_hash(&hash, "wrong"));
    }

    #[test]
    fn bcrypt_known_vector_under_all_three_prefixes() {
        for prefix in ["$2a$", "$2b$", "$2y$"] {
            let hash = format!("{prefix}{}", &BCRYPT_OPENWALL[4..]);
            assert!(verify_hash(&hash, "U*U"), "{hash}");
            assert!(!verify_hash(&hash, "U*U*"), "{hash}");
        }
    }

    #[test]
    fn bcrypt_generated_hash_under_all_three_prefixes() {
        let hash = hash_bcrypt("pa:ss word", 4).unwrap();
        for prefix in ["$2a$", "$2b$", "$2y$"] {
            let hash = format!("{prefix}{}", &hash[4..]);
            assert!(verify_hash(&hash, "pa:ss word"), "{hash}");
            assert!(!verify_hash(&hash, "pa:ss"), "{hash}");
        }
    }

    #[test]
    fn bcrypt_refuses_bad_cost_and_long_passwords() {
        assert_eq!(hash_bcrypt("x", 3), Err(HashError::Cost(3)));
        assert_eq!(hash_bcrypt("x", 32), Err(HashError::Cost(32)));
        let long = "x".repeat(73);
        assert_eq!(hash_bcrypt(&long, 4), Err(HashError::PasswordTooLong(73)));
        assert!(verify_hash(
            &hash_bcrypt(&long[..72], 4).unwrap(),
            &long[..72]
        ));
    }

    #[test]
    fn classifies_unsupported_schemes() {
        let cases = [
            ("$apr1$lZL6V/ci$eIMz/iKDkbtys/uU7LEK00", "apr1 MD5"),
            ("{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "SHA-1"),
            ("$1$salt$qJH7.N4xYta3aEG/dfqo/0", "MD5 crypt"),
            ("$5$rounds=5000$salt$abc", "SHA-256 crypt"),
            ("$6$salt$abc", "SHA-512 crypt"),
            (
                "$2x$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
                "bcrypt $2x$",
            ),
            ("$scrypt$ln=16,r=8,p=1$abc$def", "unknown"),
            ("rqXexS6ZhobKA", "crypt"),
            ("secret", "plain"),
        ];
        for (hash, name) in cases {
            match Scheme::classify(hash) {
                Ok(Scheme::Unsupported(got)) => assert_eq!(got, name, "{hash}"),
                other => panic!("{hash}: {other:?}"),
            }
            assert!(!verify_hash(hash, "secret"));
        }
    }

    #[test]
    fn malformed_supported_hashes_are_errors() {
        for hash in [
            "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ",
            "$argon2id$v=19$m=1,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
            "$argon2id$garbage",
            "$2y$05$tooshort",
            "$2y$99$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
        ] {
            assert!(Scheme::classify(hash).is_err(), "{hash}");
            assert!(!verify_hash(hash, "password"), "{hash}");
        }
    }

    #[test]
    fn debug_does_not_print_hashes() {
        let Ok(Scheme::Supported(hash)) = Scheme::classify(ARGON2ID_REFERENCE) else {
            panic!("reference vector must parse");
        };
        let shown = format!("{hash:?}");
        assert!(!shown.contains("c29tZXNhbHQ"), "{shown}");
    }
}
