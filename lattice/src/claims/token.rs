//! Signed claims: a JWT-like token, the shape wasmCloud's `wascap` uses.
//!
//! A token is three base64url parts (no padding) joined by `.`:
//! `HEADER.BODY.SIGNATURE`.
//!
//! * `HEADER` is the JSON [`Header`], `{"typ":"jwt","alg":"ed25519-nkey"}`;
//! * `BODY` is the JSON [`Body`]: issuer (an nkeys account public key, `A...`),
//!   subject (the hex sha256 of the module without its claims section, see
//!   [`module_hash`](super::module_hash)), issued-at and optional expiry (Unix
//!   seconds), and the [`Claims`] under `lattice`;
//! * `SIGNATURE` is the issuer's ed25519 signature of the ASCII bytes
//!   `HEADER.BODY` (as they appear in the token).
//!
//! Decoding ([`Token::decode`]) needs no feature; signing ([`sign`]) and
//! verifying ([`Token::verify`], [`IssuerPolicy`]) need the `sign` feature
//! (on by default).

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};

use super::Claims;

/// The token's `typ`.
pub const TYP: &str = "jwt";
/// The token's `alg`: ed25519 with an nkeys-encoded issuer key.
pub const ALG: &str = "ed25519-nkey";

/// The first part of a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Always [`TYP`].
    pub typ: String,
    /// Always [`ALG`].
    pub alg: String,
}

/// The second part of a token: who signed which module, and its claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Body {
    /// The issuer's public key: an nkeys account key (`A...`, 56 characters).
    #[serde(rename = "iss")]
    pub issuer: String,
    /// The hex sha256 of the module without its claims section.
    #[serde(rename = "sub")]
    pub subject: String,
    /// When the token was signed, Unix seconds.
    #[serde(rename = "iat")]
    pub issued_at: u64,
    /// When the token stops being valid, Unix seconds; `None`: never.
    #[serde(rename = "exp", default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
    /// The claims themselves.
    #[serde(rename = "lattice")]
    pub claims: Claims,
}

/// A decoded token. Decoding checks the format only; [`Token::verify`] checks
/// the signature, the subject and the expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The header.
    pub header: Header,
    /// The body.
    pub body: Body,
    /// The signed part, `HEADER.BODY` as it appears in the token.
    signed: String,
    /// The raw signature bytes.
    signature: Vec<u8>,
}

/// Why a token is malformed, or why a module is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    /// The token does not decode.
    #[error("its claims token is malformed: {0}")]
    Malformed(String),
    /// The module has no claims at all.
    #[error("it is not signed: it has no claims (sign it with `lattice claims sign`)")]
    NoClaims,
    /// The module's claims are plain JSON.
    #[error("it is not signed: its claims are unsigned JSON (sign it with `lattice claims sign`)")]
    Unsigned,
    /// The signature does not verify against the issuer's key.
    #[error("the signature of its claims does not verify for issuer {issuer}: {reason}")]
    BadSignature {
        /// The issuer named in the token.
        issuer: String,
        /// What failed.
        reason: String,
    },
    /// The module's bytes changed after signing.
    #[error(
        "its bytes changed after signing: the claims were signed for module sha256 {signed}, but the module hashes to {actual}"
    )]
    Tampered {
        /// The subject in the token.
        signed: String,
        /// The hash of the module as it is.
        actual: String,
    },
    /// The token expired.
    #[error("its claims expired at {at} (signed by issuer {issuer})")]
    Expired {
        /// The expiry, RFC 3339.
        at: String,
        /// The issuer.
        issuer: String,
    },
    /// The issuer is not one the policy allows.
    #[error(
        "its claims are signed by issuer {issuer}, which this host does not allow (allowed: {allowed})"
    )]
    UnknownIssuer {
        /// The issuer named in the token.
        issuer: String,
        /// The allowed issuers, comma-separated.
        allowed: String,
    },
}

#[cfg(feature = "sign")]
fn b64_json<T: Serialize>(value: &T) -> String {
    // Serialising these plain structs cannot fail.
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap_or_default())
}

fn unb64(part: &str, what: &str) -> Result<Vec<u8>, TrustError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|e| TrustError::Malformed(format!("the {what} is not base64url: {e}")))
}

impl Token {
    /// Decodes `HEADER.BODY.SIGNATURE` without verifying anything but the format.
    ///
    /// # Errors
    /// [`TrustError::Malformed`] naming the part that does not decode.
    pub fn decode(text: &str) -> Result<Token, TrustError> {
        let mut parts = text.split('.');
        let (Some(h), Some(b), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TrustError::Malformed(
                "expected three base64url parts separated by '.'".into(),
            ));
        };
        let header: Header = serde_json::from_slice(&unb64(h, "header")?)
            .map_err(|e| TrustError::Malformed(format!("bad header: {e}")))?;
        if header.alg != ALG {
            return Err(TrustError::Malformed(format!(
                "unsupported algorithm {:?} (expected {ALG:?})",
                header.alg
            )));
        }
        let body: Body = serde_json::from_slice(&unb64(b, "body")?)
            .map_err(|e| TrustError::Malformed(format!("bad body: {e}")))?;
        let signature = unb64(sig, "signature")?;
        Ok(Token {
            header,
            body,
            signed: format!("{h}.{b}"),
            signature,
        })
    }

    /// The token as text, `HEADER.BODY.SIGNATURE`.
    pub fn encode(&self) -> String {
        format!(
            "{}.{}",
            self.signed,
            URL_SAFE_NO_PAD.encode(&self.signature)
        )
    }

    /// Whether the token has expired at `now` (Unix seconds).
    pub fn expired(&self, now: u64) -> bool {
        self.body.expires.is_some_and(|exp| now >= exp)
    }

    /// Verifies the token for `module` at `now` (Unix seconds): the issuer's
    /// signature, that the subject is the module's hash without claims, and
    /// the expiry. Which issuers are acceptable is [`IssuerPolicy`]'s business.
    ///
    /// # Errors
    /// [`TrustError::BadSignature`], [`TrustError::Tampered`],
    /// [`TrustError::Expired`]; [`TrustError::Malformed`] when `module` is not
    /// a core module.
    #[cfg(feature = "sign")]
    pub fn verify(&self, module: &[u8], now: u64) -> Result<(), TrustError> {
        self.verify_signature()?;
        let actual =
            super::module_hash(module).map_err(|e| TrustError::Malformed(e.to_string()))?;
        if !actual.eq_ignore_ascii_case(&self.body.subject) {
            return Err(TrustError::Tampered {
                signed: self.body.subject.clone(),
                actual,
            });
        }
        if self.expired(now) {
            return Err(TrustError::Expired {
                at: format_time(self.body.expires.unwrap_or_default()),
                issuer: self.body.issuer.clone(),
            });
        }
        Ok(())
    }

    /// Verifies only the issuer's signature of the header and body.
    ///
    /// # Errors
    /// [`TrustError::BadSignature`].
    #[cfg(feature = "sign")]
    pub fn verify_signature(&self) -> Result<(), TrustError> {
        let bad = |reason: String| TrustError::BadSignature {
            issuer: self.body.issuer.clone(),
            reason,
        };
        let key = nkeys::KeyPair::from_public_key(&self.body.issuer)
            .map_err(|e| bad(format!("the issuer is not an nkeys public key: {e}")))?;
        key.verify(self.signed.as_bytes(), &self.signature)
            .map_err(|e| bad(e.to_string()))
    }
}

/// `secs` since the Unix epoch as RFC 3339.
pub fn format_time(secs: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The current time, Unix seconds.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Checks an issuer key given on a command line or in a config: an nkeys
/// account public key (`A...`).
///
/// # Errors
/// [`crate::Error::InvalidId`] saying what is wrong.
#[cfg(feature = "sign")]
pub fn validate_issuer(key: &str) -> Result<(), crate::Error> {
    let bad = |reason| crate::Error::InvalidId {
        kind: "issuer public key",
        value: key.to_string(),
        reason,
    };
    let kp = nkeys::KeyPair::from_public_key(key)
        .map_err(|_| bad("not an nkeys public key (56 characters starting with 'A')"))?;
    if kp.key_pair_type() != nkeys::KeyPairType::Account {
        return Err(bad("not an account key: issuer keys start with 'A'"));
    }
    Ok(())
}

/// Signs `claims` for `module` with `issuer` and returns the module with the
/// token in its claims section (replacing any claims it had).
///
/// `issued_at` and `expires` are Unix seconds ([`now`] for the first).
///
/// # Errors
/// [`crate::Error::Codec`] when `module` is not a core module or signing fails;
/// [`crate::Error::InvalidId`] when the claims are invalid or the issuer is
/// not an account key.
#[cfg(feature = "sign")]
pub fn sign(
    module: &[u8],
    claims: &Claims,
    issuer: &nkeys::KeyPair,
    issued_at: u64,
    expires: Option<u64>,
) -> Result<Vec<u8>, crate::Error> {
    claims.validate()?;
    if issuer.key_pair_type() != nkeys::KeyPairType::Account {
        return Err(crate::Error::InvalidId {
            kind: "issuer key",
            value: issuer.public_key(),
            reason: "not an account key: make one with `lattice keys gen`",
        });
    }
    let body = Body {
        issuer: issuer.public_key(),
        subject: super::module_hash(module)?,
        issued_at,
        expires,
        claims: claims.clone(),
    };
    let header = Header {
        typ: TYP.into(),
        alg: ALG.into(),
    };
    let signed = format!("{}.{}", b64_json(&header), b64_json(&body));
    let signature = issuer
        .sign(signed.as_bytes())
        .map_err(|e| crate::Error::Codec {
            action: "encode",
            what: "a claims signature".into(),
            reason: e.to_string(),
        })?;
    let token = Token {
        header,
        body,
        signed,
        signature,
    };
    super::with_section(module, token.encode().as_bytes())
}

/// Which issuers a host trusts. Empty (the default): every module runs, signed
/// or not, and signatures are not checked. Otherwise a module runs only when
/// its claims are a token signed by one of the issuers, for exactly its bytes,
/// and not expired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssuerPolicy {
    allowed: Vec<String>,
}

impl IssuerPolicy {
    /// A policy allowing `issuers` (nkeys account public keys).
    ///
    /// # Errors
    /// [`crate::Error::InvalidId`] naming a key that is not an account public key.
    #[cfg(feature = "sign")]
    pub fn new<S: AsRef<str>>(issuers: &[S]) -> Result<Self, crate::Error> {
        let mut allowed: Vec<String> = Vec::new();
        for key in issuers {
            let key = key.as_ref().trim();
            validate_issuer(key)?;
            if !allowed.iter().any(|k| k == key) {
                allowed.push(key.to_string());
            }
        }
        Ok(IssuerPolicy { allowed })
    }

    /// Whether the policy checks anything (some issuer is allowed).
    pub fn is_enforced(&self) -> bool {
        !self.allowed.is_empty()
    }

    /// The allowed issuers.
    pub fn allowed(&self) -> &[String] {
        &self.allowed
    }

    /// Checks the token of a module's claims against the policy at `now`
    /// (Unix seconds): an allowed issuer, a valid signature, the module's
    /// bytes as signed, not expired.
    ///
    /// # Errors
    /// The [`TrustError`] saying why the token is refused.
    #[cfg(feature = "sign")]
    pub fn check_token(&self, token: &Token, module: &[u8], now: u64) -> Result<(), TrustError> {
        if !self.allowed.contains(&token.body.issuer) {
            return Err(TrustError::UnknownIssuer {
                issuer: token.body.issuer.clone(),
                allowed: self.allowed.join(", "),
            });
        }
        token.verify(module, now)
    }

    /// The claims of `module` if the policy lets it run at `now`: with no
    /// issuer allowed, whatever claims it has (unverified); otherwise only
    /// claims in a token that passes [`IssuerPolicy::check_token`].
    ///
    /// # Errors
    /// The [`TrustError`] saying why the module is refused.
    #[cfg(feature = "sign")]
    pub fn check(&self, module: &[u8], now: u64) -> Result<Option<Claims>, TrustError> {
        let embedded =
            super::read_embedded(module).map_err(|e| TrustError::Malformed(e.to_string()))?;
        if !self.is_enforced() {
            return Ok(embedded.map(super::Embedded::into_claims));
        }
        match embedded {
            None => Err(TrustError::NoClaims),
            Some(super::Embedded::Unsigned(_)) => Err(TrustError::Unsigned),
            Some(super::Embedded::Signed(token)) => {
                self.check_token(&token, module, now)?;
                Ok(Some(token.body.claims))
            }
        }
    }
}

#[cfg(all(test, feature = "sign"))]
mod tests {
    use super::super::{Embedded, embed, read, read_embedded};
    use super::*;

    // (module (memory (export "memory") 1)) plus a custom section "x"
    const TINY: &[u8] =
        b"\0asm\x01\0\0\0\x05\x03\x01\x00\x01\x07\x0a\x01\x06memory\x02\x00\x00\x03\x01x\x07";

    fn claims() -> Claims {
        Claims {
            name: "frontend".into(),
            version: "1.2.0".into(),
            contracts: vec!["lattice:httpserver".into()],
            actors: vec!["pricing".into()],
        }
    }

    #[test]
    fn sign_then_verify() {
        let issuer = nkeys::KeyPair::new_account();
        assert!(issuer.public_key().starts_with('A'));
        let signed = sign(TINY, &claims(), &issuer, 1_000, Some(2_000)).unwrap();
        assert!(
            signed.starts_with(TINY),
            "the module's own sections stay in place"
        );
        assert_eq!(read(&signed).unwrap(), Some(claims()));
        let Some(Embedded::Signed(token)) = read_embedded(&signed).unwrap() else {
            panic!("expected a token");
        };
        assert_eq!(token.body.issuer, issuer.public_key());
        assert_eq!(token.body.subject, super::super::module_hash(TINY).unwrap());
        assert_eq!(token.body.issued_at, 1_000);
        assert_eq!(Token::decode(&token.encode()).unwrap(), token);
        token.verify(&signed, 1_500).unwrap();

        let policy = IssuerPolicy::new(&[issuer.public_key()]).unwrap();
        assert_eq!(policy.check(&signed, 1_500).unwrap(), Some(claims()));
        // Re-signing replaces the token; the subject stays the same.
        let again = sign(&signed, &claims(), &issuer, 1_100, None).unwrap();
        assert_eq!(super::super::strip(&again).unwrap(), TINY);
        policy.check(&again, u64::MAX).unwrap();
    }

    #[test]
    fn refusals_say_why() {
        let issuer = nkeys::KeyPair::new_account();
        let other = nkeys::KeyPair::new_account();
        let policy = IssuerPolicy::new(&[issuer.public_key()]).unwrap();
        let signed = sign(TINY, &claims(), &issuer, 1_000, Some(2_000)).unwrap();

        assert_eq!(policy.check(TINY, 1_500), Err(TrustError::NoClaims));
        let unsigned = embed(TINY, &claims()).unwrap();
        assert_eq!(policy.check(&unsigned, 1_500), Err(TrustError::Unsigned));

        let foreign = sign(TINY, &claims(), &other, 1_000, None).unwrap();
        let err = policy.check(&foreign, 1_500).unwrap_err();
        assert!(
            matches!(&err, TrustError::UnknownIssuer { issuer, .. } if *issuer == other.public_key()),
            "{err}"
        );
        assert!(err.to_string().contains(&issuer.public_key()), "{err}");

        let err = policy.check(&signed, 2_000).unwrap_err();
        assert!(matches!(err, TrustError::Expired { .. }), "{err}");
        assert!(err.to_string().contains("1970-01-01T00:33:20Z"), "{err}");

        // Change a byte of the module (the "x" section's content), keep the token.
        let mut tampered = signed.clone();
        tampered[TINY.len() - 1] ^= 1;
        let err = policy.check(&tampered, 1_500).unwrap_err();
        assert!(matches!(err, TrustError::Tampered { .. }), "{err}");

        // Swap in another body (more contracts) under the old signature.
        let Some(Embedded::Signed(token)) = read_embedded(&signed).unwrap() else {
            panic!("expected a token");
        };
        let mut body = token.body.clone();
        body.claims.contracts.push("lattice:keyvalue".into());
        let text = token.encode();
        let mut parts: Vec<&str> = text.split('.').collect();
        let forged_body = b64_json(&body);
        parts[1] = &forged_body;
        let forged = super::super::with_section(TINY, parts.join(".").as_bytes()).unwrap();
        let err = policy.check(&forged, 1_500).unwrap_err();
        assert!(matches!(err, TrustError::BadSignature { .. }), "{err}");

        // Without a policy everything runs, unverified.
        let open = IssuerPolicy::default();
        assert!(!open.is_enforced());
        assert_eq!(open.check(&tampered, 1_500).unwrap(), Some(claims()));
        assert_eq!(open.check(TINY, 1_500).unwrap(), None);
    }

    #[test]
    fn malformed_tokens_and_keys() {
        for bad in ["", "a.b", "a.b.c.d", "!!.!!.!!", "e30.e30.AA"] {
            assert!(
                matches!(Token::decode(bad), Err(TrustError::Malformed(_))),
                "{bad:?}"
            );
        }
        let garbage = super::super::with_section(TINY, b"not a token").unwrap();
        let err = read(&garbage).unwrap_err().to_string();
        assert!(err.contains("malformed") || err.contains("base64"), "{err}");

        let user = nkeys::KeyPair::new_user();
        assert!(IssuerPolicy::new(&[user.public_key()]).is_err());
        assert!(IssuerPolicy::new(&["Anope"]).is_err());
        assert!(sign(TINY, &claims(), &user, 0, None).is_err());
        let account = nkeys::KeyPair::new_account().public_key();
        let policy = IssuerPolicy::new(&[account.clone(), account]).unwrap();
        assert_eq!(policy.allowed().len(), 1);
    }
}
