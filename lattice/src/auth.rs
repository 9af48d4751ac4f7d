//! How a process proves who it is to NATS: one set of connect options shared by
//! hosts, the `lattice` CLI and providers (in a host or standalone).
//!
//! [`NatsAuth`] holds at most one credential — a JWT creds file, an nkey seed
//! file, a user and password, or a token — plus TLS settings. It deserializes
//! from the flat config table (`nats_creds`, `nats_nkey`, `nats_user`,
//! `nats_password`, `nats_token`, `tls_ca`, `tls_cert`, `tls_key`), so the same
//! keys work in a config file and as `LATTICE_*` environment variables.
//! [`connect`] turns it into a connection whose refusals name the credential,
//! and reports permission violations to a [`Refusals`] channel so a command
//! refused by NATS can say so at once instead of timing out.

use std::{
    fmt,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// Prefix of the reply inboxes of a connection authenticated with an nkey:
/// `_INBOX.{public key}`, so NATS permissions can give every user its own
/// replies and nobody else's.
pub const INBOX_PREFIX: &str = "_INBOX";

/// Credentials and TLS settings for a NATS connection.
///
/// User, password and token are meant to come from the environment
/// (`LATTICE_NATS_USER`, `LATTICE_NATS_PASSWORD`, `LATTICE_NATS_TOKEN`) or the
/// config file, never from the command line, where other users can read them.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NatsAuth {
    /// A JWT credentials file (`.creds`, as `nsc` writes them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_creds: Option<PathBuf>,
    /// A file holding an nkey user seed (`SU…`), as `lattice auth init` writes them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_nkey: Option<PathBuf>,
    /// User name for user/password authentication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_user: Option<String>,
    /// Password for user/password authentication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_password: Option<String>,
    /// Token authentication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_token: Option<String>,
    /// CA certificate (PEM) that signed the server's certificate; implies TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs [`NatsAuth::tls_key`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of [`NatsAuth::tls_cert`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
}

impl fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("NatsAuth")
            .field("nats_creds", &self.nats_creds)
            .field("nats_nkey", &self.nats_nkey)
            .field("nats_user", &self.nats_user)
            .field("nats_password", &secret(&self.nats_password))
            .field("nats_token", &secret(&self.nats_token))
            .field("tls_ca", &self.tls_ca)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .finish()
    }
}

/// Why the options could not be built or the connection was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The settings contradict each other or miss a part.
    #[error("invalid NATS credentials: {0}")]
    Invalid(String),
    /// A credential or certificate file could not be read or parsed.
    #[error("cannot use {what} {path}: {reason}")]
    File {
        /// What the file is, e.g. "nkey seed".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The server refused the connection or could not be reached.
    #[error("could not connect to NATS at {url} (using {credential}): {reason}")]
    Connect {
        /// The URL(s) tried.
        url: String,
        /// Which credential was presented, see [`NatsAuth::describe`].
        credential: String,
        /// What async-nats and the server said.
        reason: String,
    },
}

impl NatsAuth {
    /// Reads the settings from `LATTICE_*` environment variables only (for
    /// programs without a config layer, e.g. standalone providers).
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let path = |k: &str| var(k).map(PathBuf::from);
        NatsAuth {
            nats_creds: path("LATTICE_NATS_CREDS"),
            nats_nkey: path("LATTICE_NATS_NKEY"),
            nats_user: var("LATTICE_NATS_USER"),
            nats_password: var("LATTICE_NATS_PASSWORD"),
            nats_token: var("LATTICE_NATS_TOKEN"),
            tls_ca: path("LATTICE_TLS_CA"),
            tls_cert: path("LATTICE_TLS_CERT"),
            tls_key: path("LATTICE_TLS_KEY"),
        }
    }

    /// Takes `--nats-creds FILE`, `--nats-nkey FILE`, `--tls-ca FILE`,
    /// `--tls-cert FILE` and `--tls-key FILE` (also as `--flag=FILE`) out of
    /// `args`, overriding what is set, and returns the other arguments in
    /// order: for programs without clap, e.g. standalone providers. User,
    /// password and token have no flags: they come from the environment only.
    ///
    /// # Errors
    /// [`AuthError::Invalid`] when a flag has no value.
    pub fn apply_args(
        &mut self,
        args: impl IntoIterator<Item = String>,
    ) -> Result<Vec<String>, AuthError> {
        let mut rest = Vec::new();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) => (f.to_string(), Some(v.to_string())),
                None => (arg.clone(), None),
            };
            let slot = match flag.as_str() {
                "--nats-creds" => &mut self.nats_creds,
                "--nats-nkey" => &mut self.nats_nkey,
                "--tls-ca" => &mut self.tls_ca,
                "--tls-cert" => &mut self.tls_cert,
                "--tls-key" => &mut self.tls_key,
                _ => {
                    rest.push(arg);
                    continue;
                }
            };
            let value = inline
                .or_else(|| args.next())
                .ok_or_else(|| AuthError::Invalid(format!("{flag} needs a file")))?;
            *slot = Some(PathBuf::from(value));
        }
        Ok(rest)
    }

    /// Which credential these settings present, for messages:
    /// `nkey seed /etc/lattice/caller.nk`, `JWT creds …`, `user alice`,
    /// `token`, or `no credential`; `, TLS` is appended when TLS is configured.
    pub fn describe(&self) -> String {
        let cred = if let Some(p) = &self.nats_creds {
            format!("JWT creds {}", p.display())
        } else if let Some(p) = &self.nats_nkey {
            format!("nkey seed {}", p.display())
        } else if let Some(u) = &self.nats_user {
            format!("user {u}")
        } else if self.nats_token.is_some() {
            "token".to_string()
        } else {
            "no credential".to_string()
        };
        if self.uses_tls() {
            format!("{cred}, TLS")
        } else {
            cred
        }
    }

    /// The role the credential stands for, as far as it can be told: the file
    /// name of a seed or creds file without extension (`auth init` names them
    /// after their role, e.g. `caller.nk`), or the user name.
    pub fn role(&self) -> Option<String> {
        let stem = |p: &Path| p.file_stem().map(|s| s.to_string_lossy().into_owned());
        self.nats_nkey
            .as_deref()
            .or(self.nats_creds.as_deref())
            .and_then(stem)
            .or_else(|| self.nats_user.clone())
    }

    /// Whether TLS is configured (a CA or a client certificate).
    pub fn uses_tls(&self) -> bool {
        self.tls_ca.is_some() || self.tls_cert.is_some()
    }

    /// Checks that at most one credential is given and that the parts that go
    /// together are there.
    ///
    /// # Errors
    /// [`AuthError::Invalid`] saying what is wrong.
    pub fn validate(&self) -> Result<(), AuthError> {
        let given: Vec<&str> = [
            (self.nats_creds.is_some(), "nats_creds"),
            (self.nats_nkey.is_some(), "nats_nkey"),
            (self.nats_user.is_some(), "nats_user"),
            (self.nats_token.is_some(), "nats_token"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect();
        if given.len() > 1 {
            return Err(AuthError::Invalid(format!(
                "give one credential, not several ({})",
                given.join(", ")
            )));
        }
        if self.nats_user.is_some() != self.nats_password.is_some() {
            return Err(AuthError::Invalid(
                "a user needs a password and a password a user \
                 (LATTICE_NATS_USER and LATTICE_NATS_PASSWORD)"
                    .into(),
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(AuthError::Invalid(
                "a client certificate (tls_cert) needs its key (tls_key) and the reverse".into(),
            ));
        }
        Ok(())
    }

    /// The nkey seed and its public key, when an nkey file is configured.
    ///
    /// # Errors
    /// [`AuthError::File`] when the file cannot be read or holds no user seed.
    pub fn nkey_seed(&self) -> Result<Option<(String, String)>, AuthError> {
        let Some(path) = &self.nats_nkey else {
            return Ok(None);
        };
        let file_err = |reason: String| AuthError::File {
            what: "nkey seed",
            path: path.clone(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
        // A seed file may carry comments or decorations around the seed line.
        let seed = text
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("SU"))
            .ok_or_else(|| file_err("no user seed (a line starting with SU) in it".into()))?
            .to_string();
        let pair = nkeys::KeyPair::from_seed(&seed)
            .map_err(|e| file_err(format!("not a valid nkey seed: {e}")))?;
        Ok(Some((seed, pair.public_key())))
    }

    /// Builds async-nats connect options carrying these credentials and TLS
    /// settings (nothing else). With an nkey, reply inboxes are
    /// `_INBOX.{public key}.…` ([`INBOX_PREFIX`]).
    ///
    /// # Errors
    /// [`AuthError`] when the settings are invalid or a file is unusable.
    pub async fn options(&self) -> Result<async_nats::ConnectOptions, AuthError> {
        self.validate()?;
        let mut opts = async_nats::ConnectOptions::new();
        if let Some(path) = &self.nats_creds {
            opts = opts
                .credentials_file(path)
                .await
                .map_err(|e| AuthError::File {
                    what: "JWT creds",
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
        }
        if let Some((seed, public)) = self.nkey_seed()? {
            opts = opts
                .nkey(seed)
                .custom_inbox_prefix(format!("{INBOX_PREFIX}.{public}"));
        }
        if let (Some(user), Some(pass)) = (&self.nats_user, &self.nats_password) {
            opts = opts.user_and_password(user.clone(), pass.clone());
        }
        if let Some(token) = &self.nats_token {
            opts = opts.token(token.clone());
        }
        for (what, path) in [
            ("TLS CA", &self.tls_ca),
            ("TLS certificate", &self.tls_cert),
            ("TLS key", &self.tls_key),
        ] {
            if let Some(path) = path
                && !path.is_file()
            {
                return Err(AuthError::File {
                    what,
                    path: path.clone(),
                    reason: "no such file".into(),
                });
            }
        }
        if let Some(ca) = &self.tls_ca {
            opts = opts.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            opts = opts.add_client_certificate(cert.clone(), key.clone());
        }
        if self.uses_tls() {
            opts = opts.require_tls(true);
        }
        Ok(opts)
    }
}

/// A refusal by NATS permissions, as the server reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The server's words, e.g. `Permissions Violation for Publish to "lattice.x.ctl.host.H.stop"`.
    pub message: String,
    /// The credential the connection used ([`NatsAuth::describe`]).
    pub credential: String,
    /// The role, when it can be told ([`NatsAuth::role`]).
    pub role: Option<String>,
}

impl Refusal {
    /// The subject named in the server's message, if any.
    pub fn subject(&self) -> Option<&str> {
        let rest = self.message.split(" to ").nth(1)?;
        Some(rest.trim().trim_matches('"'))
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let action = if self.message.contains("Subscription") {
            "subscribe to"
        } else {
            "publish to"
        };
        let subject = self.subject().unwrap_or("a subject");
        let role = self.role.as_deref().unwrap_or("this credential");
        write!(
            f,
            "NATS refused: role {role} may not {action} {subject} (using {}; server said: {})",
            self.credential, self.message
        )
    }
}

impl std::error::Error for Refusal {}

/// Where a connection reports permission violations. Clone it freely;
/// [`Refusals::subscribe`] before doing what may be refused.
#[derive(Debug, Clone)]
pub struct Refusals(broadcast::Sender<Refusal>);

impl Default for Refusals {
    fn default() -> Self {
        Refusals(broadcast::channel(16).0)
    }
}

impl Refusals {
    /// A new channel.
    pub fn new() -> Self {
        Self::default()
    }

    /// Receives the refusals reported from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Refusal> {
        self.0.subscribe()
    }

    /// Waits for the next refusal (pending forever if the channel closes).
    pub async fn next(rx: &mut broadcast::Receiver<Refusal>) -> Refusal {
        loop {
            match rx.recv().await {
                Ok(r) => return r,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => {
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}

/// Connects to `url` (comma-separated servers of a cluster) as `name` with
/// `auth`: a bounded first attempt (5 s), then unlimited reconnects. Permission
/// violations the server reports later go to `refusals` (and the log).
///
/// # Errors
/// [`AuthError::Connect`] naming the URL, the credential used and the server's
/// answer (e.g. `authorization violation`); [`AuthError`] for unusable settings.
pub async fn connect(
    url: &str,
    name: &str,
    auth: &NatsAuth,
    refusals: Option<Refusals>,
) -> Result<async_nats::Client, AuthError> {
    let credential = auth.describe();
    let role = auth.role();
    let url_owned = url.to_string();
    let (cred_cb, role_cb) = (credential.clone(), role.clone());
    let opts = auth
        .options()
        .await?
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None)
        .event_callback(move |event| {
            let url = url_owned.clone();
            let refusals = refusals.clone();
            let (credential, role) = (cred_cb.clone(), role_cb.clone());
            async move {
                match event {
                    async_nats::Event::Disconnected => {
                        tracing::warn!(%url, "disconnected from NATS; reconnecting")
                    }
                    async_nats::Event::Connected => tracing::info!(%url, "connected to NATS"),
                    async_nats::Event::ServerError(async_nats::ServerError::Other(message))
                        if message.starts_with("Permissions Violation") =>
                    {
                        let refusal = Refusal {
                            message,
                            credential,
                            role,
                        };
                        tracing::info!(%url, "{refusal}");
                        if let Some(r) = refusals {
                            let _ = r.0.send(refusal);
                        }
                    }
                    async_nats::Event::ServerError(
                        async_nats::ServerError::AuthorizationViolation,
                    ) => {
                        tracing::error!(%url, %credential, "NATS authorization violation")
                    }
                    other => tracing::debug!(%url, event = %other, "NATS event"),
                }
            }
        });
    let urls: Vec<&str> = url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    opts.connect(urls).await.map_err(|e| {
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            let text = s.to_string();
            if !reason.contains(&text) {
                reason = format!("{reason}: {text}");
            }
            source = s.source();
        }
        AuthError::Connect {
            url: url.to_string(),
            credential,
            reason,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_credential_and_complete_pairs() {
        let both = NatsAuth {
            nats_nkey: Some("a.nk".into()),
            nats_token: Some("t".into()),
            ..Default::default()
        };
        assert!(
            both.validate()
                .unwrap_err()
                .to_string()
                .contains("one credential")
        );
        let half = NatsAuth {
            nats_user: Some("u".into()),
            ..Default::default()
        };
        assert!(half.validate().is_err());
        let cert = NatsAuth {
            tls_cert: Some("c.pem".into()),
            ..Default::default()
        };
        assert!(cert.validate().unwrap_err().to_string().contains("tls_key"));
        assert!(NatsAuth::default().validate().is_ok());
    }

    #[test]
    fn flags_override_and_the_rest_is_kept() {
        let mut a = NatsAuth {
            nats_nkey: Some("env.nk".into()),
            ..Default::default()
        };
        let rest = a
            .apply_args(
                [
                    "--id",
                    "kv",
                    "--nats-nkey",
                    "flag.nk",
                    "--tls-ca=ca.pem",
                    "x",
                ]
                .map(String::from),
            )
            .unwrap();
        assert_eq!(rest, ["--id", "kv", "x"]);
        assert_eq!(a.nats_nkey.as_deref(), Some(Path::new("flag.nk")));
        assert_eq!(a.tls_ca.as_deref(), Some(Path::new("ca.pem")));
        assert!(a.apply_args(["--tls-key".to_string()]).is_err());
    }

    #[test]
    fn describes_without_secrets() {
        let a = NatsAuth {
            nats_user: Some("alice".into()),
            nats_password: Some("hunter2".into()),
            tls_ca: Some("ca.pem".into()),
            ..Default::default()
        };
        assert_eq!(a.describe(), "user alice, TLS");
        assert!(!format!("{a:?}").contains("hunter2"));
        let n = NatsAuth {
            nats_nkey: Some("/x/caller.nk".into()),
            ..Default::default()
        };
        assert_eq!(n.role().as_deref(), Some("caller"));
        assert_eq!(n.describe(), "nkey seed /x/caller.nk");
    }

    #[test]
    fn refusal_names_subject_and_role() {
        let r = Refusal {
            message: "Permissions Violation for Publish to \"lattice.a.ctl.host.H.stop\"".into(),
            credential: "nkey seed caller.nk".into(),
            role: Some("caller".into()),
        };
        assert_eq!(r.subject(), Some("lattice.a.ctl.host.H.stop"));
        let text = r.to_string();
        assert!(
            text.contains("role caller may not publish to lattice.a.ctl.host.H.stop"),
            "{text}"
        );
    }

    #[test]
    fn reads_seed_files() {
        let dir = std::env::temp_dir().join(format!("lattice-auth-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let pair = nkeys::KeyPair::new_user();
        let path = dir.join("host.nk");
        std::fs::write(&path, format!("# host\n{}\n", pair.seed().unwrap())).unwrap();
        let a = NatsAuth {
            nats_nkey: Some(path.clone()),
            ..Default::default()
        };
        let (_, public) = a.nkey_seed().unwrap().unwrap();
        assert_eq!(public, pair.public_key());
        std::fs::write(&path, "nothing").unwrap();
        assert!(a.nkey_seed().is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
