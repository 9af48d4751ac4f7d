//! Configuration, layered with figment: defaults < config file < `LATTICE_*`
//! environment < command-line flags.
//!
//! One struct per concern: [`ConnectConfig`] (how to reach the lattice, used by
//! every command), [`HostConfig`] (what `lattice up` is), [`RuntimeConfig`] (how
//! actors run), [`LogConfig`]. Each is extracted from the same figment, so a
//! config file is one flat TOML table:
//!
//! ```toml
//! nats_url = "nats://10.0.0.5:4222"
//! lattice = "prod"
//! nats_nkey = "/etc/lattice/host.nk"   # or nats_creds; user/password/token from env
//! tls_ca = "/etc/lattice/ca.pem"
//! heartbeat_interval = "5s"
//! call_timeout = "3s"
//! max_memory_mib = 128
//! [labels]
//! zone = "eu-1"
//! ```

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use lattice::{auth::NatsAuth, id::LatticeId};
use serde::{Deserialize, Serialize};

/// How to reach a lattice.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectConfig {
    /// NATS server URL. Unset: `nats://127.0.0.1:4222`, and `lattice up` starts a
    /// local `nats-server` when nothing listens there.
    pub nats_url: Option<String>,
    /// The lattice id (`--lattice`, `LATTICE_ID`).
    pub lattice: LatticeId,
    /// Timeout of control requests and calls made by the CLI.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Credentials and TLS (`nats_creds`, `nats_nkey`, `nats_user`,
    /// `nats_password`, `nats_token`, `tls_ca`, `tls_cert`, `tls_key`; env
    /// `LATTICE_NATS_CREDS`, …, `LATTICE_TLS_CA`, …).
    #[serde(flatten)]
    pub auth: NatsAuth,
}

impl Default for ConnectConfig {
    fn default() -> Self {
        ConnectConfig {
            nats_url: None,
            lattice: LatticeId::default(),
            timeout: Duration::from_secs(10),
            auth: NatsAuth::default(),
        }
    }
}

/// The default NATS address, also where an embedded server listens.
pub const DEFAULT_NATS_ADDR: &str = "127.0.0.1:4222";

/// What a host is.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct HostConfig {
    /// Human name; generated when unset.
    pub name: Option<String>,
    /// Labels for placement, in addition to `os`, `arch` and `hostname`.
    pub labels: BTreeMap<String, String>,
    /// How often the host publishes a heartbeat with its inventory.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// How long a stopping host waits for in-flight calls.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// The `nats-server` binary for the embedded server (default: found on PATH).
    pub nats_server_bin: Option<PathBuf>,
    /// Where the embedded server keeps JetStream data (default: the user's data dir).
    pub data_dir: Option<PathBuf>,
    /// Address the embedded server listens on (default 127.0.0.1:4222). Beyond
    /// loopback it runs with the roles of `lattice auth init` unless `insecure`.
    pub listen: Option<String>,
    /// Let the embedded server listen beyond loopback without authentication.
    pub insecure: bool,
    /// Take part in reconciling deployed apps (leader-elected; on by default).
    pub reconcile: bool,
    /// Time between reconcile passes and reconciler-lease renewals.
    #[serde(with = "humantime_serde")]
    pub reconcile_interval: Duration,
    /// Issuers (nkeys account public keys, `A...`) whose signed modules this
    /// host runs. Empty: every module runs, signed or not. Otherwise only
    /// modules whose claims token one of them signed, for exactly the module's
    /// bytes and not expired (`--allowed-issuer`, repeatable;
    /// `LATTICE_ALLOWED_ISSUERS`, comma-separated).
    #[serde(deserialize_with = "string_or_list")]
    pub allowed_issuers: Vec<String>,
    /// Where to serve Prometheus metrics on `/metrics` (`--metrics-addr`,
    /// `LATTICE_METRICS_ADDR`); unset: no metrics are kept at all.
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// A list given as a TOML/JSON array or as one comma- or space-separated
/// string (what an environment variable holds).
fn string_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s
            .split([',', ' '])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        OneOrMany::Many(v) => v,
    })
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            name: None,
            labels: BTreeMap::new(),
            heartbeat_interval: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(10),
            nats_server_bin: None,
            data_dir: None,
            listen: None,
            insecure: false,
            reconcile: true,
            reconcile_interval: Duration::from_secs(1),
            allowed_issuers: Vec::new(),
            metrics_addr: None,
        }
    }
}

/// The largest `max_concurrency_per_replica` a host accepts: with at most
/// [`lattice::app::MAX_REPLICAS`] replicas of an actor on a host, an actor's
/// concurrency limit stays far inside what a counter can hold.
pub const MAX_CONCURRENCY_PER_REPLICA: u32 = 10_000;

/// The largest `max_queued_per_replica` a host accepts.
pub const MAX_QUEUED_PER_REPLICA: u32 = 100_000;

/// The largest `max_calls_per_host` a host accepts.
pub const MAX_CALLS_PER_HOST: u32 = 1_000_000;

/// How actors run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RuntimeConfig {
    /// Deadline of one call into an actor, including the calls it makes.
    #[serde(with = "humantime_serde")]
    pub call_timeout: Duration,
    /// Linear-memory cap per actor instance, in MiB.
    pub max_memory_mib: u32,
    /// Concurrent calls each replica may serve (each on its own instance),
    /// 1 to [`MAX_CONCURRENCY_PER_REPLICA`].
    pub max_concurrency_per_replica: u32,
    /// Calls each replica may hold waiting for a free instance once all of its
    /// actor's instances are busy, 0 to [`MAX_QUEUED_PER_REPLICA`]. A call past
    /// `replicas × (max_concurrency_per_replica + max_queued_per_replica)` is
    /// refused at once with a "busy" error instead of waiting.
    pub max_queued_per_replica: u32,
    /// Calls in flight plus queued across all actors of the host, 1 to
    /// [`MAX_CALLS_PER_HOST`]; each holds its request payload (up to the NATS
    /// max payload), so this bounds the memory calls take. Past it every call
    /// is refused at once with a "busy" error.
    pub max_calls_per_host: u32,
    /// Instances the pooling allocator reserves room for, across all actors.
    pub max_instances: u32,
    /// Most instances (warm or serving a call) one actor may hold on this
    /// host, so one busy actor cannot take every slot from the rest; it also
    /// caps the actor's calls in flight here. Unset: a quarter of
    /// `max_instances` (at least 1). See [`RuntimeConfig::instance_share`].
    pub max_instances_per_actor: Option<u32>,
    /// How long an actor's warm instances stay after its last call before
    /// they are dropped, freeing their slots and memory (the next call
    /// creates one, tens of microseconds). At least 1 s.
    #[serde(with = "humantime_serde")]
    pub instance_idle_timeout: Duration,
    /// Use the pooling allocator when the address space allows it.
    pub pooling: bool,
    /// Where compiled modules are cached (default: the user's cache dir); see
    /// [`RuntimeConfig::no_cache`].
    pub cache_dir: Option<PathBuf>,
    /// Disable the on-disk compiled-module cache.
    pub no_cache: bool,
    /// Keep a component's instance for its next request after a complete
    /// response, as waPC instances are kept. Off by default: a fresh instance
    /// per request is the wasi:http norm, and some language runtimes (the
    /// JavaScript engine of componentize-js) answer only one request per
    /// instance. Faster when every component on the host allows it.
    pub reuse_component_instances: bool,
    /// Largest size of the on-disk compiled-module cache, in MiB; the least
    /// recently used modules are removed past it.
    pub cache_max_mib: u64,
    /// Compiled modules kept in memory for fast restarts, least recently used
    /// first out (modules of running actors stay loaded regardless).
    pub max_cached_modules: usize,
    /// Environment variables every actor sees through WASI.
    pub actor_env: BTreeMap<String, String>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            call_timeout: Duration::from_secs(5),
            max_memory_mib: 256,
            max_concurrency_per_replica: 4,
            max_queued_per_replica: 16,
            max_calls_per_host: 512,
            max_instances: 1000,
            max_instances_per_actor: None,
            instance_idle_timeout: Duration::from_secs(60),
            pooling: true,
            cache_dir: None,
            no_cache: false,
            reuse_component_instances: false,
            cache_max_mib: 1024,
            max_cached_modules: 256,
            actor_env: BTreeMap::new(),
        }
    }
}

impl RuntimeConfig {
    /// Checks the limits are in range.
    ///
    /// # Errors
    /// A message naming the option, its range and the value given.
    pub fn validate(&self) -> Result<(), String> {
        let checks = [
            (
                "max_concurrency_per_replica",
                self.max_concurrency_per_replica,
                1,
                MAX_CONCURRENCY_PER_REPLICA,
            ),
            (
                "max_queued_per_replica",
                self.max_queued_per_replica,
                0,
                MAX_QUEUED_PER_REPLICA,
            ),
            (
                "max_calls_per_host",
                self.max_calls_per_host,
                1,
                MAX_CALLS_PER_HOST,
            ),
        ];
        for (name, value, min, max) in checks {
            if !(min..=max).contains(&value) {
                return Err(format!("{name} must be {min} to {max}, got {value}"));
            }
        }
        if let Some(share) = self.max_instances_per_actor
            && !(1..=self.max_instances).contains(&share)
        {
            return Err(format!(
                "max_instances_per_actor must be 1 to max_instances ({}), got {share}",
                self.max_instances
            ));
        }
        if self.instance_idle_timeout < Duration::from_secs(1) {
            return Err(format!(
                "instance_idle_timeout must be at least 1s, got {:?}",
                self.instance_idle_timeout
            ));
        }
        Ok(())
    }

    /// Most instances one actor may hold on this host:
    /// `max_instances_per_actor`, else a quarter of `max_instances`.
    pub fn instance_share(&self) -> u32 {
        self.max_instances_per_actor
            .unwrap_or(self.max_instances / 4)
            .clamp(1, self.max_instances.max(1))
    }

    /// The memory cap in bytes.
    pub fn max_memory_bytes(&self) -> usize {
        (self.max_memory_mib as usize) << 20
    }

    /// Fills in the default cache dir unless caching is disabled.
    pub fn resolve_cache_dir(mut self) -> Self {
        if self.no_cache {
            self.cache_dir = None;
        } else if self.cache_dir.is_none() {
            self.cache_dir = directories::ProjectDirs::from("dev", "lattice", "lattice")
                .map(|d| d.cache_dir().join("modules"));
        }
        self
    }
}

/// Logging and trace export.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct LogConfig {
    /// An env-filter directive, e.g. `info,lattice_host=debug` (`LATTICE_LOG`).
    pub log: Option<String>,
    /// Log as JSON lines (`LATTICE_LOG_JSON=true`).
    pub log_json: bool,
    /// Export spans over OTLP/HTTP (protobuf) to this collector, e.g.
    /// `http://127.0.0.1:4318` (`/v1/traces` is appended) (`--otlp-endpoint`,
    /// `LATTICE_OTLP_ENDPOINT`; else the standard `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub otlp_endpoint: Option<String>,
    /// A PEM file of the CA certificates to trust (instead of Mozilla's
    /// roots) for an `https://` collector (`--otlp-certificate`, `LATTICE_OTLP_CERTIFICATE`;
    /// else the standard `OTEL_EXPORTER_OTLP_CERTIFICATE`).
    pub otlp_certificate: Option<PathBuf>,
}

/// Builds the layered figment: defaults, the config file (explicit path, else
/// `~/.config/lattice/config.toml` when present), `LATTICE_*` env, then `flags`.
///
/// `LATTICE_ID` sets `lattice`; `LATTICE_CONFIG` names the file.
pub fn figment(file: Option<&Path>, flags: impl Serialize) -> Figment {
    let mut fig = Figment::new()
        .merge(Serialized::defaults(ConnectConfig::default()))
        .merge(Serialized::defaults(HostConfig::default()))
        .merge(Serialized::defaults(RuntimeConfig::default()))
        .merge(Serialized::defaults(LogConfig::default()));
    let default_file = directories::ProjectDirs::from("dev", "lattice", "lattice")
        .map(|d| d.config_dir().join("config.toml"));
    match file {
        Some(path) => fig = fig.merge(Toml::file_exact(path)),
        None => {
            if let Some(path) = default_file.filter(|p| p.exists()) {
                fig = fig.merge(Toml::file_exact(path));
            }
        }
    }
    fig.merge(Env::prefixed("LATTICE_").ignore(&["config"]).map(|k| {
        if k == "id" {
            "lattice".into()
        } else {
            k.into()
        }
    }))
    .merge(Serialized::globals(flags))
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail API returns its large error type
mod tests {
    use super::*;

    #[test]
    fn layers_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "l.toml",
                "lattice = \"from-file\"\ncall_timeout = \"2s\"\nmax_memory_mib = 64\n[labels]\nzone = \"a\"\n",
            )?;
            jail.set_env("LATTICE_MAX_MEMORY_MIB", "32");
            jail.set_env("LATTICE_ID", "from-env");
            #[derive(Serialize)]
            struct Flags {
                #[serde(skip_serializing_if = "Option::is_none")]
                lattice: Option<String>,
            }
            let fig = figment(Some(Path::new("l.toml")), Flags { lattice: None });
            let c: ConnectConfig = fig.extract()?;
            let r: RuntimeConfig = fig.extract()?;
            let h: HostConfig = fig.extract()?;
            assert_eq!(c.lattice.as_str(), "from-env");
            assert_eq!(r.call_timeout, Duration::from_secs(2));
            assert_eq!(r.max_memory_mib, 32);
            assert_eq!(h.labels.get("zone").map(String::as_str), Some("a"));
            let fig = figment(
                Some(Path::new("l.toml")),
                Flags {
                    lattice: Some("from-flag".into()),
                },
            );
            let c: ConnectConfig = fig.extract()?;
            assert_eq!(c.lattice.as_str(), "from-flag");
            Ok(())
        });
    }

    #[test]
    fn allowed_issuers_from_file_env_and_flags() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("i.toml", "allowed_issuers = [\"AFILE\"]\n")?;
            let no_flags = BTreeMap::<String, String>::new();
            let h: HostConfig = figment(Some(Path::new("i.toml")), &no_flags).extract()?;
            assert_eq!(h.allowed_issuers, ["AFILE"]);
            jail.set_env("LATTICE_ALLOWED_ISSUERS", "AONE, ATWO");
            let h: HostConfig = figment(Some(Path::new("i.toml")), &no_flags).extract()?;
            assert_eq!(h.allowed_issuers, ["AONE", "ATWO"]);
            jail.set_env("LATTICE_ALLOWED_ISSUERS", "ASOLE");
            let h: HostConfig = figment(None, &no_flags).extract()?;
            assert_eq!(h.allowed_issuers, ["ASOLE"]);
            #[derive(Serialize)]
            struct Flags {
                allowed_issuers: Vec<String>,
            }
            let flags = Flags {
                allowed_issuers: vec!["AFLAG".into()],
            };
            let h: HostConfig = figment(None, flags).extract()?;
            assert_eq!(h.allowed_issuers, ["AFLAG"]);
            assert!(HostConfig::default().allowed_issuers.is_empty());
            Ok(())
        });
    }

    #[test]
    fn auth_fields_layer_file_env_flags() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "l.toml",
                "nats_nkey = \"/file/host.nk\"\ntls_ca = \"/file/ca.pem\"\ntls_cert = \"/file/c.pem\"\n",
            )?;
            let none = BTreeMap::<String, String>::new();
            let c: ConnectConfig = figment(Some(Path::new("l.toml")), &none).extract()?;
            assert_eq!(
                c.auth.nats_nkey.as_deref(),
                Some(Path::new("/file/host.nk"))
            );
            assert_eq!(c.auth.tls_ca.as_deref(), Some(Path::new("/file/ca.pem")));
            assert_eq!(c.auth.nats_user, None);

            jail.set_env("LATTICE_NATS_NKEY", "/env/caller.nk");
            jail.set_env("LATTICE_TLS_CA", "/env/ca.pem");
            jail.set_env("LATTICE_TLS_KEY", "/env/k.pem");
            jail.set_env("LATTICE_NATS_USER", "alice");
            jail.set_env("LATTICE_NATS_PASSWORD", "s3cret");
            jail.set_env("LATTICE_NATS_TOKEN", "tok");
            let c: ConnectConfig = figment(Some(Path::new("l.toml")), &none).extract()?;
            assert_eq!(
                c.auth.nats_nkey.as_deref(),
                Some(Path::new("/env/caller.nk"))
            );
            assert_eq!(c.auth.tls_ca.as_deref(), Some(Path::new("/env/ca.pem")));
            assert_eq!(c.auth.tls_cert.as_deref(), Some(Path::new("/file/c.pem")));
            assert_eq!(c.auth.tls_key.as_deref(), Some(Path::new("/env/k.pem")));
            assert_eq!(c.auth.nats_user.as_deref(), Some("alice"));
            assert_eq!(c.auth.nats_password.as_deref(), Some("s3cret"));
            assert_eq!(c.auth.nats_token.as_deref(), Some("tok"));

            #[derive(Serialize)]
            struct Flags {
                nats_nkey: PathBuf,
                nats_creds: PathBuf,
            }
            let flags = Flags {
                nats_nkey: "/flag/admin.nk".into(),
                nats_creds: "/flag/u.creds".into(),
            };
            let c: ConnectConfig = figment(Some(Path::new("l.toml")), flags).extract()?;
            assert_eq!(
                c.auth.nats_nkey.as_deref(),
                Some(Path::new("/flag/admin.nk"))
            );
            assert_eq!(
                c.auth.nats_creds.as_deref(),
                Some(Path::new("/flag/u.creds"))
            );
            // Several credentials at once are refused when connecting.
            assert!(c.auth.validate().is_err());
            Ok(())
        });
    }

    #[test]
    fn call_limits_from_env_and_checked() {
        figment::Jail::expect_with(|jail| {
            let no_flags = BTreeMap::<String, String>::new();
            let r: RuntimeConfig = figment(None, &no_flags).extract()?;
            assert_eq!((r.max_queued_per_replica, r.max_calls_per_host), (16, 512));
            assert!(r.validate().is_ok());
            jail.set_env("LATTICE_MAX_QUEUED_PER_REPLICA", "3");
            jail.set_env("LATTICE_MAX_CALLS_PER_HOST", "40");
            let r: RuntimeConfig = figment(None, &no_flags).extract()?;
            assert_eq!((r.max_queued_per_replica, r.max_calls_per_host), (3, 40));
            let bad = RuntimeConfig {
                max_calls_per_host: 0,
                ..r
            };
            assert_eq!(
                bad.validate().unwrap_err(),
                "max_calls_per_host must be 1 to 1000000, got 0"
            );
            Ok(())
        });
    }

    #[test]
    fn instance_share_and_idle_timeout() {
        figment::Jail::expect_with(|jail| {
            let no_flags = BTreeMap::<String, String>::new();
            let r: RuntimeConfig = figment(None, &no_flags).extract()?;
            assert_eq!(r.instance_share(), 250);
            assert_eq!(r.instance_idle_timeout, Duration::from_secs(60));
            jail.set_env("LATTICE_MAX_INSTANCES", "3");
            jail.set_env("LATTICE_INSTANCE_IDLE_TIMEOUT", "90s");
            let r: RuntimeConfig = figment(None, &no_flags).extract()?;
            // A quarter of 3 rounds to 0; every actor may hold at least one.
            assert_eq!(r.instance_share(), 1);
            assert_eq!(r.instance_idle_timeout, Duration::from_secs(90));
            let cases = [
                (
                    Some(0),
                    1,
                    "max_instances_per_actor must be 1 to max_instances (3), got 0",
                ),
                (
                    Some(4),
                    1,
                    "max_instances_per_actor must be 1 to max_instances (3), got 4",
                ),
                (
                    None,
                    0,
                    "instance_idle_timeout must be at least 1s, got 0ns",
                ),
            ];
            for (share, secs, message) in cases {
                let bad = RuntimeConfig {
                    max_instances_per_actor: share,
                    instance_idle_timeout: Duration::from_secs(secs),
                    ..r.clone()
                };
                assert_eq!(bad.validate().unwrap_err(), message);
            }
            Ok(())
        });
    }

    #[test]
    fn bad_values_are_named() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("LATTICE_ID", "not.valid");
            let no_flags = BTreeMap::<String, String>::new();
            let err = figment(None, no_flags)
                .extract::<ConnectConfig>()
                .unwrap_err();
            assert!(err.to_string().contains("invalid lattice id"), "{err}");
            Ok(())
        });
    }
}
