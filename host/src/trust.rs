//! Which modules a host runs: the issuer policy, checked once when an actor
//! starts (never per call), with verified tokens remembered by module digest.
//!
//! With no allowed issuer every module runs with whatever claims it has,
//! unverified. With some, a module runs only when its claims are a token
//! signed by an allowed issuer for exactly its bytes and not expired; the
//! refusal says which of these failed (see [`TrustError`]).

use std::{
    num::NonZeroUsize,
    sync::{Arc, Mutex},
};

use lattice::{
    claims::{
        self, Claims,
        token::{self, IssuerPolicy, TrustError},
    },
    digest::Digest,
};

/// How many modules' checked claims a host remembers (least recently used
/// out first).
const KNOWN_MODULES: NonZeroUsize = NonZeroUsize::new(4096).unwrap();

/// A host's issuer policy and the modules it has already checked.
#[derive(Debug)]
pub struct Trust {
    policy: IssuerPolicy,
    /// Digest → (claims, expiry) of modules checked under the policy (verified
    /// tokens when it is enforced). The artifact store checks a module's bytes
    /// against its digest, so a digest stands for exactly the bytes checked.
    known: Mutex<lru::LruCache<Digest, Checked>>,
}

/// The claims of a checked module and when its token expires (Unix seconds).
type Checked = (Option<Arc<Claims>>, Option<u64>);

/// Why a module may not start, naming it.
#[derive(Debug, thiserror::Error)]
pub enum StartRefused {
    /// The claims section does not decode.
    #[error("{what} has unreadable claims: {source}")]
    Unreadable {
        /// The actor and module, e.g. `actor hello (hello.wasm)`.
        what: String,
        /// The decoding error.
        #[source]
        source: lattice::Error,
    },
    /// The issuer policy refuses the module.
    #[error("{what} refused by the issuer policy: {source}")]
    Policy {
        /// The actor and module.
        what: String,
        /// Which check failed.
        #[source]
        source: TrustError,
    },
}

impl Trust {
    /// A policy allowing `issuers`; empty allows every module.
    ///
    /// # Errors
    /// [`lattice::Error::InvalidId`] naming a key that is not an account
    /// public key.
    pub fn new<S: AsRef<str>>(issuers: &[S]) -> Result<Self, lattice::Error> {
        Ok(Trust {
            policy: IssuerPolicy::new(issuers)?,
            known: Mutex::new(lru::LruCache::new(KNOWN_MODULES)),
        })
    }

    fn lock_known(&self) -> std::sync::MutexGuard<'_, lru::LruCache<Digest, Checked>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The claims of a module checked before, while that check still holds
    /// (its token has not expired): a start of it needs no download. `None`
    /// when it has not been checked, or must be checked again.
    pub fn known(&self, digest: &Digest) -> Option<Option<Arc<Claims>>> {
        let now = token::now();
        match self.lock_known().get(digest) {
            Some((claims, expires)) if expires.is_none_or(|exp| now < exp) => Some(claims.clone()),
            _ => None,
        }
    }

    /// Whether some issuer is allowed.
    pub fn is_enforced(&self) -> bool {
        self.policy.is_enforced()
    }

    /// The claims `module` (whose digest is `digest`) may start with, or why
    /// it may not start. `what` names the actor in the error.
    ///
    /// # Errors
    /// [`StartRefused`].
    pub fn claims_for(
        &self,
        what: &str,
        digest: &Digest,
        module: &[u8],
    ) -> Result<Option<Arc<Claims>>, StartRefused> {
        if let Some(claims) = self.known(digest) {
            return Ok(claims);
        }
        if !self.policy.is_enforced() {
            let claims = claims::read(module)
                .map(|c| c.map(Arc::new))
                .map_err(|source| StartRefused::Unreadable {
                    what: what.to_string(),
                    source,
                })?;
            self.lock_known()
                .put(digest.clone(), (claims.clone(), None));
            return Ok(claims);
        }
        let now = token::now();
        let refuse = |source| StartRefused::Policy {
            what: what.to_string(),
            source,
        };
        let embedded =
            claims::read_embedded(module).map_err(|source| StartRefused::Unreadable {
                what: what.to_string(),
                source,
            })?;
        let token = match embedded {
            None => return Err(refuse(TrustError::NoClaims)),
            Some(claims::Embedded::Unsigned(_)) => return Err(refuse(TrustError::Unsigned)),
            Some(claims::Embedded::Signed(token)) => token,
        };
        self.policy
            .check_token(&token, module, now)
            .map_err(refuse)?;
        let claims = Arc::new(token.body.claims);
        self.lock_known()
            .put(digest.clone(), (Some(claims.clone()), token.body.expires));
        Ok(Some(claims))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: &[u8] = b"\0asm\x01\0\0\0\x05\x03\x01\x00\x01";

    #[test]
    fn verified_once_then_from_the_cache_until_expiry() {
        let issuer = nkeys::KeyPair::new_account();
        let trust = Trust::new(&[issuer.public_key()]).unwrap();
        assert!(trust.is_enforced());
        let c = Claims {
            name: "a".into(),
            ..Claims::default()
        };
        let now = token::now();
        let signed = token::sign(TINY, &c, &issuer, now, Some(now + 3600)).unwrap();
        let digest = Digest::of(&signed);
        let got = trust.claims_for("actor a", &digest, &signed).unwrap();
        assert_eq!(got.as_deref(), Some(&c));
        assert_eq!(trust.lock_known().len(), 1);
        assert_eq!(trust.known(&digest).flatten().as_deref(), Some(&c));
        // A cached entry that has expired is checked again, and refused.
        trust.lock_known().get_mut(&digest).unwrap().1 = Some(now - 1);
        assert!(
            trust.known(&digest).is_none(),
            "an expired check is not known"
        );
        let expired = token::sign(TINY, &c, &issuer, now - 10, Some(now - 1)).unwrap();
        let err = trust
            .claims_for("actor a", &digest, &expired)
            .unwrap_err()
            .to_string();
        assert!(err.contains("actor a") && err.contains("expired"), "{err}");

        let unsigned = claims::embed(TINY, &c).unwrap();
        let err = trust
            .claims_for("actor b", &Digest::of(&unsigned), &unsigned)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("actor b") && err.contains("not signed"),
            "{err}"
        );

        let open = Trust::new::<&str>(&[]).unwrap();
        assert!(!open.is_enforced());
        let got = open
            .claims_for("actor b", &Digest::of(&unsigned), &unsigned)
            .unwrap();
        assert_eq!(got.as_deref(), Some(&c));
        assert!(Trust::new(&["not-a-key"]).is_err());
    }
}
