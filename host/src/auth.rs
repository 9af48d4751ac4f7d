//! Roles of a lattice enforced by NATS itself: `lattice auth init` writes one
//! nkey seed per role and a `nats.conf` whose users carry least-privilege
//! permissions.
//!
//! Each lattice gets a NATS account of its own (`LATTICE_{lid}`, JetStream
//! enabled), so no credential of one lattice can see a subject, an inbox or a
//! bucket of another. Inside the account every user gets exactly what its
//! role needs ([`permissions`]); replies travel on `_INBOX.{user's public key}.>`
//! (see [`lattice::auth::INBOX_PREFIX`]) so nobody reads another user's replies,
//! and servers answer requests through `allow_responses`.
//! The table is in `docs/protocol.md`.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use lattice::{id::LatticeId, subject};

/// A role of a lattice member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Runs the lattice: serves actors and built-in providers, publishes
    /// heartbeats and host events, holds the reconciler lease.
    Host,
    /// A provider process: serves `rpc.provider.*`, calls actors, reads links.
    Provider,
    /// Operates the lattice: starts, stops, links, deploys, reads everything.
    Admin,
    /// Calls actors, nothing else.
    Caller,
    /// Reads inventory, links and events; changes nothing, calls nothing.
    Observer,
}

impl Role {
    /// Every role, in the order files are written.
    pub const ALL: [Role; 5] = [
        Role::Host,
        Role::Provider,
        Role::Admin,
        Role::Caller,
        Role::Observer,
    ];

    /// The role's name, also the stem of its seed file (`host.nk`, …).
    pub fn name(self) -> &'static str {
        match self {
            Role::Host => "host",
            Role::Provider => "provider",
            Role::Admin => "admin",
            Role::Caller => "caller",
            Role::Observer => "observer",
        }
    }

    /// The seed file of this role in an `auth init` directory.
    pub fn seed_file(self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.nk", self.name()))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a user may do: NATS `publish`/`subscribe` allow and deny lists, and
/// whether it may answer requests it received (`allow_responses`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    /// Subjects it may publish to.
    pub publish_allow: Vec<String>,
    /// Subjects it may not publish to, even when allowed above.
    pub publish_deny: Vec<String>,
    /// Subjects it may subscribe to.
    pub subscribe_allow: Vec<String>,
    /// May publish to the reply subject of a message it received.
    pub allow_responses: bool,
}

/// The NATS account of a lattice.
pub fn account_name(lattice: &LatticeId) -> String {
    format!("LATTICE_{lattice}")
}

/// The permissions of `role` in `lattice` for the user whose public nkey is
/// `public_key` (its reply inbox is `_INBOX.{public_key}.>`).
pub fn permissions(role: Role, lattice: &LatticeId, public_key: &str) -> Permissions {
    let l = format!("lattice.{lattice}");
    let state = subject::state_bucket(lattice);
    let artifacts = subject::artifact_bucket(lattice);
    let inbox = format!("{}.{public_key}.>", lattice::auth::INBOX_PREFIX);
    // Reading the state bucket (links, tags, app status) through JetStream.
    let read_state = vec![
        "$JS.API.INFO".to_string(),
        format!("$JS.API.STREAM.INFO.KV_{state}"),
        format!("$JS.API.CONSUMER.CREATE.KV_{state}"),
        format!("$JS.API.CONSUMER.CREATE.KV_{state}.>"),
        format!("$JS.API.CONSUMER.DELETE.KV_{state}.>"),
        format!("$JS.API.CONSUMER.INFO.KV_{state}.>"),
        format!("$JS.API.DIRECT.GET.KV_{state}"),
        format!("$JS.API.DIRECT.GET.KV_{state}.>"),
        format!("$JS.API.STREAM.MSG.GET.KV_{state}"),
        format!("$JS.FC.KV_{state}.>"),
    ];
    // Nobody but hosts may touch the lease or the host registry, or remove
    // state wholesale.
    let guard_state = vec![
        format!("$KV.{state}.lease.>"),
        format!("$KV.{state}.host.>"),
        "$JS.API.STREAM.DELETE.>".to_string(),
        "$JS.API.STREAM.UPDATE.>".to_string(),
        format!("$JS.API.STREAM.PURGE.KV_{state}"),
        format!("$JS.API.STREAM.MSG.DELETE.KV_{state}"),
        format!("$JS.API.STREAM.PURGE.OBJ_{artifacts}"),
        format!("$JS.API.STREAM.MSG.DELETE.OBJ_{artifacts}"),
    ];
    match role {
        Role::Host => Permissions {
            // Within its own account: the whole lattice and its JetStream state.
            // Replies go to `_INBOX.>` by an explicit allow, not only through
            // `allow_responses`: that allows one message per request, and a
            // host answers a long call or start with progress messages first,
            // so the reply itself would be refused. Reply tokens cannot be
            // guessed (`lattice::rpc::remote`), so this reaches only requests
            // the host was sent.
            publish_allow: vec![
                format!("{l}.>"),
                "_INBOX.>".into(),
                "$JS.API.>".into(),
                "$JS.FC.>".into(),
                "$JS.ACK.>".into(),
                "$KV.>".into(),
                "$O.>".into(),
            ],
            publish_deny: vec![],
            subscribe_allow: vec![format!("{l}.>"), inbox],
            allow_responses: true,
        },
        Role::Provider => {
            let publish_allow = vec![
                format!("{l}.rpc.actor.*"),
                // Replies with progress, as for hosts.
                "_INBOX.>".into(),
                format!("{l}.ctl.ping.providers"),
                format!("{l}.evt.provider_started"),
                format!("{l}.evt.provider_stopped"),
                format!("{l}.evt.link_failed"),
                // Its own buckets (the jetstream key-value backend); the
                // state bucket and the artifacts are guarded below.
                "$JS.API.>".into(),
                "$JS.FC.>".into(),
                "$JS.ACK.>".into(),
                "$KV.>".into(),
            ];
            let mut publish_deny = guard_state;
            publish_deny.extend([format!("$KV.{state}.>"), "$O.>".to_string()]);
            Permissions {
                publish_allow,
                publish_deny,
                subscribe_allow: vec![
                    format!("{l}.rpc.provider.*"),
                    format!("{l}.ctl.ping.providers"),
                    inbox,
                ],
                allow_responses: true,
            }
        }
        Role::Admin => {
            let publish_allow = vec![
                format!("{l}.ctl.>"),
                format!("{l}.evt.link_put"),
                format!("{l}.evt.link_deleted"),
                "$JS.API.>".into(),
                "$JS.FC.>".into(),
                "$JS.ACK.>".into(),
                format!("$KV.{state}.>"),
                format!("$O.{artifacts}.>"),
            ];
            Permissions {
                publish_allow,
                publish_deny: guard_state,
                subscribe_allow: vec![format!("{l}.evt.>"), inbox],
                allow_responses: false,
            }
        }
        Role::Caller => Permissions {
            publish_allow: vec![format!("{l}.rpc.actor.*")],
            publish_deny: vec![],
            subscribe_allow: vec![inbox],
            allow_responses: false,
        },
        Role::Observer => {
            let mut publish_allow = vec![
                format!("{l}.ctl.ping.hosts"),
                format!("{l}.ctl.ping.providers"),
                format!("{l}.ctl.host.*.inventory"),
            ];
            publish_allow.extend(read_state);
            Permissions {
                publish_allow,
                publish_deny: vec![],
                subscribe_allow: vec![format!("{l}.evt.>"), inbox],
                allow_responses: false,
            }
        }
    }
}

/// The members of one lattice: each role's public nkey.
#[derive(Debug, Clone)]
pub struct LatticeUsers {
    /// The lattice.
    pub lattice: LatticeId,
    /// `(role, public nkey)` pairs.
    pub users: Vec<(Role, String)>,
}

impl LatticeUsers {
    /// Reads the public keys from the seed files of an `auth init` directory.
    ///
    /// # Errors
    /// When a seed file is missing or invalid; the message names it.
    pub fn load(lattice: LatticeId, dir: &Path) -> anyhow::Result<Self> {
        let mut users = Vec::new();
        for role in Role::ALL {
            let auth = lattice::auth::NatsAuth {
                nats_nkey: Some(role.seed_file(dir)),
                ..Default::default()
            };
            let (_, public) = auth.nkey_seed()?.expect("an nkey file is set");
            users.push((role, public));
        }
        Ok(LatticeUsers { lattice, users })
    }
}

fn quoted_list(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
    format!("[{}]", inner.join(", "))
}

/// A `nats-server` configuration with one account per lattice and one user
/// per role. Port, store directory and `-js` are left to the command line:
/// `nats-server -c nats.conf -p 4222 -sd DIR -js`.
pub fn nats_conf(lattices: &[LatticeUsers]) -> String {
    let mut out = String::from(
        "# Generated by `lattice auth init`: one account per lattice, one nkey user per role.\n\
         # Run: nats-server -c nats.conf -p 4222 -sd DATA_DIR -js\n\
         # Permissions are documented in docs/protocol.md (\"Roles\").\n\
         accounts {\n",
    );
    for l in lattices {
        out.push_str(&format!(
            "  {}: {{\n    jetstream: enabled\n    users: [\n",
            account_name(&l.lattice)
        ));
        for (role, public) in &l.users {
            let p = permissions(*role, &l.lattice, public);
            out.push_str(&format!(
                "      # {role}\n      {{\n        nkey: {public}\n"
            ));
            out.push_str("        permissions: {\n");
            out.push_str(&format!(
                "          publish: {{ allow: {}{} }}\n",
                quoted_list(&p.publish_allow),
                if p.publish_deny.is_empty() {
                    String::new()
                } else {
                    format!(", deny: {}", quoted_list(&p.publish_deny))
                }
            ));
            out.push_str(&format!(
                "          subscribe: {{ allow: {} }}\n",
                quoted_list(&p.subscribe_allow)
            ));
            if p.allow_responses {
                out.push_str("          allow_responses: true\n");
            }
            out.push_str("        }\n      }\n");
        }
        out.push_str("    ]\n  }\n");
    }
    out.push_str("}\n");
    out
}

/// What [`init`] wrote.
#[derive(Debug, Clone)]
pub struct AuthFiles {
    /// The directory.
    pub dir: PathBuf,
    /// `dir/nats.conf`.
    pub nats_conf: PathBuf,
    /// The members and their public keys.
    pub users: LatticeUsers,
    /// Whether the seeds were created now (false: existing seeds were reused).
    pub created: bool,
}

/// The server config file of an `auth init` directory.
pub fn conf_file(dir: &Path) -> PathBuf {
    dir.join("nats.conf")
}

/// Writes one nkey seed per role (`dir/{role}.nk`, mode 0600) and
/// `dir/nats.conf` for `lattice`. Existing seed files are kept (so running it
/// again only rewrites the config); `dir` is created with mode 0700.
///
/// # Errors
/// When a file cannot be written or an existing seed is invalid.
pub fn init(dir: &Path, lattice: &LatticeId) -> anyhow::Result<AuthFiles> {
    use anyhow::Context;
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let mut created = false;
    for role in Role::ALL {
        let path = role.seed_file(dir);
        if path.exists() {
            continue;
        }
        let pair = nkeys::KeyPair::new_user();
        let seed = pair
            .seed()
            .map_err(|e| anyhow::anyhow!("cannot encode an nkey seed: {e}"))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        writeln!(f, "{seed}").with_context(|| format!("cannot write {}", path.display()))?;
        created = true;
    }
    let users = LatticeUsers::load(lattice.clone(), dir)?;
    let conf = conf_file(dir);
    std::fs::write(&conf, nats_conf(std::slice::from_ref(&users)))
        .with_context(|| format!("cannot write {}", conf.display()))?;
    Ok(AuthFiles {
        dir: dir.to_path_buf(),
        nats_conf: conf,
        users,
        created,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_private_seeds_and_a_config() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("auth");
        let lattice = LatticeId::new("prod").unwrap();
        let files = init(&out, &lattice).unwrap();
        assert!(files.created);
        for role in Role::ALL {
            let mode = std::fs::metadata(role.seed_file(&out))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{role}");
        }
        let conf = std::fs::read_to_string(&files.nats_conf).unwrap();
        assert!(conf.contains("LATTICE_prod: {"), "{conf}");
        for (_, key) in &files.users.users {
            assert!(key.starts_with('U') && conf.contains(key.as_str()));
        }
        // A second run keeps the keys.
        let again = init(&out, &lattice).unwrap();
        assert!(!again.created);
        assert_eq!(again.users.users, files.users.users);
    }

    #[test]
    fn only_hosts_write_the_lease_or_send_host_events() {
        let l = LatticeId::new("a").unwrap();
        for role in Role::ALL {
            let p = permissions(role, &l, "UKEY");
            let allows_host_events = p
                .publish_allow
                .iter()
                .any(|s| s == "lattice.a.>" || s == "lattice.a.evt.>");
            assert_eq!(allows_host_events, role == Role::Host, "{role}");
            if role != Role::Host {
                let lease_guarded = p
                    .publish_deny
                    .iter()
                    .any(|d| d.starts_with("$KV.LATTICE_a"))
                    || !p.publish_allow.iter().any(|a| a.starts_with("$KV."));
                assert!(lease_guarded, "{role}");
            }
            assert!(p.subscribe_allow.contains(&"_INBOX.UKEY.>".to_string()));
        }
    }
}
