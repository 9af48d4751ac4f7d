//! Declarative apps: a manifest names actors, providers and links; the lattice's
//! reconciler keeps them running.
//!
//! Manifests are TOML (schema in `docs/apps.md`):
//!
//! ```toml
//! name = "shop"
//!
//! [[actors]]
//! id = "kvcounter"
//! ref = "kvcounter.wasm"          # a file next to the manifest, sha256:…, or name:tag
//! replicas = 2
//! constraints = { zone = "a" }    # optional: labels a host must have
//!
//! [[providers]]
//! id = "httpserver"
//! ref = "builtin:httpserver"
//!
//! [[links]]
//! actor = "kvcounter"
//! provider = "httpserver"
//! contract = "lattice:httpserver"
//! config = { address = "0.0.0.0:8080" }
//! ```

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::{
    Error,
    digest::Digest,
    id::{ActorId, ContractId, LinkName, ProviderId},
    link::LinkDefinition,
};

/// Most replicas one actor of an app may ask for.
pub const MAX_REPLICAS: i64 = 1000;

/// An app manifest as the user writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// App name, a valid id.
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Actors to run.
    #[serde(default)]
    pub actors: Vec<ActorSpec>,
    /// Providers to run.
    #[serde(default)]
    pub providers: Vec<ProviderSpec>,
    /// Links to keep.
    #[serde(default)]
    pub links: Vec<LinkSpec>,
}

/// One actor of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActorSpec {
    /// Actor id.
    pub id: String,
    /// A `.wasm` file (relative to the manifest), `sha256:…` or `name:tag`.
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    /// Replicas across the lattice (0 keeps it declared but stopped).
    #[serde(default = "one")]
    pub replicas: i64,
    /// Labels a host must have.
    #[serde(default)]
    pub constraints: BTreeMap<String, String>,
    /// Configuration the actor sees as WASI environment variables.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

fn one() -> i64 {
    1
}

/// Most hosts one provider of an app may ask to run on (`count`).
pub const MAX_PROVIDER_HOSTS: i64 = 1000;

/// One provider of an app (built-ins only, run inside a host). A provider id
/// runs at most once per host; `count` or `on_every_host` say on how many
/// matching hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSpec {
    /// Provider id.
    pub id: String,
    /// `builtin:httpserver` or `builtin:keyvalue`.
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    /// Labels a host must have.
    #[serde(default)]
    pub constraints: BTreeMap<String, String>,
    /// On how many matching hosts it runs, 1 to [`MAX_PROVIDER_HOSTS`]
    /// (default 1). Not with `on_every_host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    /// Run it on every live host matching `constraints`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_every_host: bool,
}

impl ProviderSpec {
    /// How many hosts it should run on when `matching` live hosts match its
    /// constraints: every one of them for `on_every_host`, else `count`
    /// (default 1, clamped to 0..=[`MAX_PROVIDER_HOSTS`] for a spec that did
    /// not validate).
    pub fn desired_hosts(&self, matching: usize) -> u32 {
        if self.on_every_host {
            return u32::try_from(matching).unwrap_or(u32::MAX);
        }
        self.count.unwrap_or(1).clamp(0, MAX_PROVIDER_HOSTS) as u32
    }
}

/// One link of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// Actor id (declared in this app).
    pub actor: String,
    /// Provider id (declared in this app).
    pub provider: String,
    /// Contract id.
    pub contract: String,
    /// Link name.
    #[serde(default = "default_link_name")]
    pub link_name: String,
    /// Provider config.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

fn default_link_name() -> String {
    crate::link::DEFAULT_LINK_NAME.to_string()
}

impl Manifest {
    /// Parses TOML and checks it ([`Manifest::validate`]).
    ///
    /// # Errors
    /// [`Error::Codec`] for TOML errors (unknown fields included, with the line),
    /// [`Error::InvalidManifest`] for invalid content, naming the item.
    pub fn from_toml(text: &str) -> Result<Self, Error> {
        let m: Manifest = toml::from_str(text).map_err(|e| Error::Codec {
            action: "parse",
            what: "app manifest".into(),
            reason: e.to_string(),
        })?;
        m.validate()?;
        Ok(m)
    }

    /// Checks ids, references, replica counts, and that links refer to actors and
    /// providers the app declares.
    ///
    /// # Errors
    /// [`Error::InvalidManifest`] / [`Error::InvalidId`] naming what is wrong.
    pub fn validate(&self) -> Result<(), Error> {
        crate::id::validate("app name", &self.name)?;
        let mut actors = BTreeSet::new();
        for a in &self.actors {
            ActorId::new(a.id.as_str())?;
            if !actors.insert(a.id.as_str()) {
                return Err(self.invalid(format!("actor {:?} is declared twice", a.id)));
            }
            match a.reference.as_deref() {
                None | Some("") => {
                    return Err(self.invalid(format!(
                        "actor {:?} has no ref: give a .wasm file, sha256:… or name:tag",
                        a.id
                    )));
                }
                Some(_) => {}
            }
            if a.replicas < 0 {
                return Err(self.invalid(format!(
                    "actor {:?}: replicas must be 0 or more, got {}",
                    a.id, a.replicas
                )));
            }
            if a.replicas > MAX_REPLICAS {
                return Err(self.invalid(format!(
                    "actor {:?}: replicas must be at most {MAX_REPLICAS}, got {}",
                    a.id, a.replicas
                )));
            }
        }
        let mut providers = BTreeSet::new();
        for p in &self.providers {
            ProviderId::new(p.id.as_str())?;
            if !providers.insert(p.id.as_str()) {
                return Err(self.invalid(format!("provider {:?} is declared twice", p.id)));
            }
            match p.reference.as_deref() {
                Some(r) if crate::id::ProviderRef::parse(r).is_ok() => {}
                Some(r) => {
                    return Err(self.invalid(format!(
                        "provider {:?}: ref {r:?} is not supported in apps; use builtin:httpserver or builtin:keyvalue",
                        p.id
                    )));
                }
                None => {
                    return Err(self.invalid(format!(
                        "provider {:?} has no ref (e.g. builtin:keyvalue)",
                        p.id
                    )));
                }
            }
            match p.count {
                Some(_) if p.on_every_host => {
                    return Err(self.invalid(format!(
                        "provider {:?}: give count or on_every_host = true, not both",
                        p.id
                    )));
                }
                Some(n) if !(1..=MAX_PROVIDER_HOSTS).contains(&n) => {
                    return Err(self.invalid(format!(
                        "provider {:?}: count must be 1 to {MAX_PROVIDER_HOSTS} (hosts; it runs once per host), got {n}",
                        p.id
                    )));
                }
                _ => {}
            }
        }
        for l in &self.links {
            if !actors.contains(l.actor.as_str()) {
                return Err(self.invalid(format!(
                    "link {} → {}: actor {:?} is not declared in the app",
                    l.actor, l.provider, l.actor
                )));
            }
            if !providers.contains(l.provider.as_str()) {
                return Err(self.invalid(format!(
                    "link {} → {}: provider {:?} is not declared in the app",
                    l.actor, l.provider, l.provider
                )));
            }
            ContractId::new(l.contract.as_str())?;
            LinkName::new(l.link_name.as_str())?;
        }
        Ok(())
    }

    fn invalid(&self, reason: String) -> Error {
        Error::InvalidManifest {
            app: self.name.clone(),
            reason,
        }
    }

    /// The links as link definitions.
    ///
    /// # Errors
    /// [`Error::InvalidId`] for a bad id (already excluded by `validate`).
    pub fn link_definitions(&self) -> Result<Vec<LinkDefinition>, Error> {
        self.links
            .iter()
            .map(|l| {
                Ok(LinkDefinition {
                    actor_id: ActorId::new(l.actor.as_str())?,
                    provider_id: ProviderId::new(l.provider.as_str())?,
                    contract: ContractId::new(l.contract.as_str())?,
                    link_name: LinkName::new(l.link_name.as_str())?,
                    config: l.config.clone(),
                })
            })
            .collect()
    }
}

/// A deployed app, as stored in the lattice KV under `app.{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployedApp {
    /// The manifest as given.
    pub manifest: Manifest,
    /// The module digest each actor resolves to (refs resolved at deploy time).
    pub digests: BTreeMap<String, Digest>,
    /// Deploy revision, 1 for the first deploy, +1 for each change.
    pub revision: u64,
    /// RFC 3339 time of the deploy.
    pub deployed_at: String,
    /// Set by `app undeploy`: the reconciler stops everything of the app, deletes
    /// its links and then the record.
    #[serde(default)]
    pub undeploying: bool,
}

/// What the reconciler last saw of an app, stored under `appstatus.{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AppStatus {
    /// Revision the status is about.
    pub revision: u64,
    /// Host id of the reconciler that wrote it.
    pub reconciler: String,
    /// RFC 3339 time of the observation.
    pub observed_at: String,
    /// Per actor.
    pub actors: Vec<ActorStatusLine>,
    /// Per provider.
    pub providers: Vec<ProviderStatusLine>,
    /// Set when the reconciler could not act on the app at all (e.g. the stored
    /// manifest does not validate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Desired vs actual for one actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorStatusLine {
    /// Actor id.
    pub id: String,
    /// Replicas wanted.
    pub desired: u32,
    /// Replicas running the deployed module on live hosts.
    pub actual: u32,
    /// Why it is not converging, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Where one provider runs: on how many of the hosts it should.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderStatusLine {
    /// Provider id.
    pub id: String,
    /// Whether it runs on as many hosts as wanted (and at least one).
    pub running: bool,
    /// Hosts it should run on: `count`, or the matching live hosts for
    /// `on_every_host`.
    #[serde(default)]
    pub desired: u32,
    /// Live matching hosts it runs on (a standalone process with its id counts
    /// as one).
    #[serde(default)]
    pub actual: u32,
    /// Names of the hosts it runs on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Why not, when not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "shop"
[[actors]]
id = "front"
ref = "front.wasm"
replicas = 2
constraints = { zone = "a" }
[[providers]]
id = "http"
ref = "builtin:httpserver"
[[links]]
actor = "front"
provider = "http"
contract = "lattice:httpserver"
config = { address = "0.0.0.0:8080" }
"#;

    #[test]
    fn parses_a_good_manifest() {
        let m = Manifest::from_toml(GOOD).unwrap();
        assert_eq!(m.actors[0].replicas, 2);
        assert_eq!(m.links[0].link_name, "default");
        assert_eq!(
            m.link_definitions().unwrap()[0].config["address"],
            "0.0.0.0:8080"
        );
    }

    fn err(text: &str) -> String {
        Manifest::from_toml(text).unwrap_err().to_string()
    }

    #[test]
    fn bad_manifests_name_the_problem() {
        assert!(
            err(&GOOD.replace("replicas = 2", "replicas = 2\ncolour = \"red\""))
                .contains("unknown field `colour`")
        );
        assert!(
            err(&GOOD.replace("ref = \"front.wasm\"\n", "")).contains("actor \"front\" has no ref")
        );
        assert!(
            err(&GOOD.replace("replicas = 2", "replicas = -1"))
                .contains("replicas must be 0 or more, got -1")
        );
        assert!(
            err(&GOOD.replace("provider = \"http\"", "provider = \"nope\""))
                .contains("provider \"nope\" is not declared")
        );
        assert!(
            err(&GOOD.replace("name = \"shop\"", "name = \"a.b\"")).contains("invalid app name")
        );
        assert!(err(&GOOD.replace("builtin:httpserver", "oci://x")).contains("not supported"));
        assert!(err("name = ").contains("could not parse app manifest"));
    }

    #[test]
    fn provider_count_and_on_every_host() {
        let with = |extra: &str| {
            GOOD.replace(
                "ref = \"builtin:httpserver\"",
                &format!("ref = \"builtin:httpserver\"\n{extra}"),
            )
        };
        let m = Manifest::from_toml(GOOD).unwrap();
        assert_eq!(m.providers[0].desired_hosts(5), 1);
        let m = Manifest::from_toml(&with("count = 3")).unwrap();
        assert_eq!(m.providers[0].desired_hosts(5), 3);
        let m = Manifest::from_toml(&with("on_every_host = true")).unwrap();
        assert_eq!(m.providers[0].desired_hosts(5), 5);
        assert_eq!(m.providers[0].desired_hosts(0), 0);
        assert!(err(&with("count = 0")).contains("count must be 1 to 1000"));
        assert!(err(&with("count = 1001")).contains("got 1001"));
        assert!(err(&with("count = 2\non_every_host = true")).contains("not both"));
        // Serialized without the new fields when unset: old readers still parse it.
        let plain = serde_json::to_value(&Manifest::from_toml(GOOD).unwrap().providers[0]).unwrap();
        assert!(plain.get("count").is_none() && plain.get("on_every_host").is_none());
    }
}
