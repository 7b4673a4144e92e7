//! Content digests (`algorithm:hex`), as the OCI image spec defines them.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

/// The digest algorithms this registry can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A validated digest. The hex part is always lower case, so the string form
/// is canonical and safe to use as a storage key component.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("digest {0:?} is not of the form algorithm:hex")]
    Malformed(String),
    #[error("digest algorithm {0:?} is not supported (use sha256 or sha512)")]
    UnsupportedAlgorithm(String),
    #[error("digest {0:?} has an encoded part of the wrong length or alphabet")]
    BadEncoding(String),
}

impl Digest {
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }

    pub fn sha256_of(data: &[u8]) -> Digest {
        Digest::from_sha256_bytes(&sha2::Sha256::digest(data))
    }

    pub fn of(algorithm: Algorithm, data: &[u8]) -> Digest {
        match algorithm {
            Algorithm::Sha256 => Digest::sha256_of(data),
            Algorithm::Sha512 => Digest {
                algorithm,
                hex: hex::encode(sha2::Sha512::digest(data)),
            },
        }
    }

    pub fn from_sha256_bytes(bytes: &[u8]) -> Digest {
        Digest {
            algorithm: Algorithm::Sha256,
            hex: hex::encode(bytes),
        }
    }

    pub fn from_sha512_bytes(bytes: &[u8]) -> Digest {
        Digest {
            algorithm: Algorithm::Sha512,
            hex: hex::encode(bytes),
        }
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (alg, encoded) = s
            .split_once(':')
            .ok_or_else(|| DigestError::Malformed(s.to_owned()))?;
        // The image spec's grammar: algorithm-component [+._-] separated, lower case.
        let alg_ok = !alg.is_empty()
            && alg.split(['+', '.', '_', '-']).all(|c| {
                !c.is_empty()
                    && c.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            });
        if !alg_ok || encoded.is_empty() {
            return Err(DigestError::Malformed(s.to_owned()));
        }
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            other => return Err(DigestError::UnsupportedAlgorithm(other.to_owned())),
        };
        // Upper-case hex is refused rather than folded: the spec requires
        // lower case, and folding would let two strings name one blob.
        let hex_ok = encoded.len() == algorithm.hex_len()
            && encoded
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex_ok {
            return Err(DigestError::BadEncoding(s.to_owned()));
        }
        Ok(Digest {
            algorithm,
            hex: encoded.to_owned(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_prints_canonical_form() {
        let d: Digest = EMPTY.parse().unwrap();
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(Digest::sha256_of(b""), d);
    }

    #[test]
    fn rejects_bad_digests() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            ":abc",
            "sha256:abc",
            "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85g",
            "sha256:../../../../etc/passwd",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad:?} accepted");
        }
        assert!(matches!(
            "md5:d41d8cd98f00b204e9800998ecf8427e".parse::<Digest>(),
            Err(DigestError::UnsupportedAlgorithm(_))
        ));
    }

    #[test]
    fn sha512_round_trip() {
        let d = Digest::of(Algorithm::Sha512, b"x");
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
    }
}
