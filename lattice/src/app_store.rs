//! Deployed apps and their status in the lattice's KV bucket.

use std::time::SystemTime;

use async_nats::jetstream::{self, kv};
use futures::StreamExt;

use crate::{
    Error,
    app::{AppStatus, DeployedApp, Manifest},
    artifact::{STREAM_SETTLE, open_state_bucket, while_stream_settles},
    digest::Digest,
    id::LatticeId,
};

const APP_PREFIX: &str = "app.";
const STATUS_PREFIX: &str = "appstatus.";
/// The last revision of a removed app, so a later deploy of the same name
/// counts on instead of starting at 1 again.
const LAST_REVISION_PREFIX: &str = "apprev.";

/// Reads and writes apps.
#[derive(Clone)]
pub struct AppStore {
    kv: kv::Store,
    /// The server's max payload, checked before writing an app record.
    max_payload: usize,
}

fn codec(action: &'static str, what: &str, e: impl std::fmt::Display) -> Error {
    Error::Codec {
        action,
        what: what.to_string(),
        reason: e.to_string(),
    }
}

impl AppStore {
    /// Opens (creating when missing) the lattice's state bucket.
    ///
    /// # Errors
    /// [`Error::Nats`] when JetStream is unavailable.
    pub async fn open(nats: async_nats::Client, lattice: &LatticeId) -> Result<Self, Error> {
        let max_payload = nats.max_payload();
        let js = jetstream::new(nats);
        Ok(AppStore {
            kv: open_state_bucket(&js, lattice).await?,
            max_payload,
        })
    }

    /// Stores a new revision of an app. Concurrent deploys of one app are
    /// serialised with compare-and-set on the KV revision: each gets its own
    /// revision number and the last one written wins.
    ///
    /// # Errors
    /// [`Error::TooLarge`] for a record over the server's max payload,
    /// [`Error::AppContention`] when other deploys kept winning, [`Error::Nats`]
    /// on store failures.
    pub async fn deploy(
        &self,
        manifest: Manifest,
        digests: std::collections::BTreeMap<String, Digest>,
    ) -> Result<DeployedApp, Error> {
        let key = format!("{APP_PREFIX}{}", manifest.name);
        for _ in 0..100 {
            let entry = self
                .kv
                .entry(&key)
                .await
                .map_err(|e| Error::nats(format!("read app {}", manifest.name), e))?;
            let (kv_revision, previous) = match &entry {
                Some(e) if e.operation == kv::Operation::Put => (
                    e.revision,
                    serde_json::from_slice::<DeployedApp>(&e.value)
                        .map(|a| a.revision)
                        .unwrap_or(0),
                ),
                Some(e) => (e.revision, self.last_revision(&manifest.name).await),
                None => (0, self.last_revision(&manifest.name).await),
            };
            let app = DeployedApp {
                manifest: manifest.clone(),
                digests: digests.clone(),
                revision: previous + 1,
                deployed_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
                undeploying: false,
            };
            let body = serde_json::to_vec(&app).map_err(|e| codec("encode", "app", e))?;
            // Past the limit NATS refuses the write, which is no conflict to retry.
            if self.max_payload > 0 && body.len() > self.max_payload {
                return Err(Error::TooLarge {
                    what: format!(
                        "app {} ({} actors, {} providers)",
                        manifest.name,
                        manifest.actors.len(),
                        manifest.providers.len()
                    ),
                    size: body.len(),
                    max: self.max_payload,
                });
            }
            let context = || format!("write app {}", manifest.name);
            // Someone else deployed in between: read again and go on top.
            let body = bytes::Bytes::from(body);
            if kv_revision == 0 {
                match while_stream_settles(STREAM_SETTLE, || self.kv.create(&key, body.clone()))
                    .await
                {
                    Ok(_) => return Ok(app),
                    Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(Error::nats(context(), e)),
                }
            } else {
                match while_stream_settles(STREAM_SETTLE, || {
                    self.kv.update(&key, body.clone(), kv_revision)
                })
                .await
                {
                    Ok(_) => return Ok(app),
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                    Err(e) => return Err(Error::nats(context(), e)),
                }
            }
        }
        Err(Error::AppContention {
            app: manifest.name.clone(),
            action: "deploy",
        })
    }

    /// One app.
    ///
    /// # Errors
    /// [`Error::Nats`] on store failures.
    pub async fn get(&self, name: &str) -> Result<Option<DeployedApp>, Error> {
        let v = self
            .kv
            .get(format!("{APP_PREFIX}{name}"))
            .await
            .map_err(|e| Error::nats(format!("read app {name}"), e))?;
        v.map(|b| serde_json::from_slice(&b).map_err(|e| codec("decode", "app", e)))
            .transpose()
    }

    /// Every deployed app, sorted by name.
    ///
    /// # Errors
    /// [`Error::Nats`] on store failures.
    pub async fn list(&self) -> Result<Vec<DeployedApp>, Error> {
        let mut names: Vec<String> = match self.kv.keys().await {
            Ok(s) => {
                s.filter_map(|k| async move { k.ok() })
                    .filter_map(|k| async move { k.strip_prefix(APP_PREFIX).map(str::to_string) })
                    .collect()
                    .await
            }
            Err(e) => return Err(Error::nats("list apps", e)),
        };
        names.sort();
        let mut out = Vec::new();
        for n in names {
            if let Some(a) = self.get(&n).await? {
                out.push(a);
            }
        }
        Ok(out)
    }

    /// Marks an app for removal (the reconciler then removes what it runs and
    /// the record); returns the app.
    ///
    /// # Errors
    /// [`Error::Nats`] on store failures.
    pub async fn mark_undeploying(&self, name: &str) -> Result<Option<DeployedApp>, Error> {
        let key = format!("{APP_PREFIX}{name}");
        for _ in 0..100 {
            let Some((revision, mut app)) = self.entry(name).await? else {
                return Ok(None);
            };
            app.undeploying = true;
            let body = serde_json::to_vec(&app).map_err(|e| codec("encode", "app", e))?;
            if self.kv.update(&key, body.into(), revision).await.is_ok() {
                return Ok(Some(app));
            }
        }
        Err(Error::AppContention {
            app: name.to_string(),
            action: "undeploy",
        })
    }

    /// Deletes the record and status of an app being undeployed; returns what
    /// was deployed (`None` when there is no such app).
    ///
    /// The delete names the KV revision it read, so a deploy that lands in
    /// between is never deleted: it is reported instead.
    ///
    /// # Errors
    /// [`Error::AppRedeployed`] when the app was deployed again after
    /// [`AppStore::mark_undeploying`]; [`Error::Nats`] on store failures.
    pub async fn remove(&self, name: &str) -> Result<Option<DeployedApp>, Error> {
        let key = format!("{APP_PREFIX}{name}");
        for _ in 0..100 {
            let Some((revision, app)) = self.entry(name).await? else {
                return Ok(None);
            };
            if !app.undeploying {
                return Err(Error::AppRedeployed {
                    name: name.to_string(),
                    revision: app.revision,
                });
            }
            // Remember the revision first: a crash after this and before the
            // delete leaves only a harmless counter.
            self.kv
                .put(
                    format!("{LAST_REVISION_PREFIX}{name}"),
                    app.revision.to_string().into_bytes().into(),
                )
                .await
                .map_err(|e| Error::nats(format!("record the last revision of app {name}"), e))?;
            match self.kv.delete_expect_revision(&key, Some(revision)).await {
                Ok(()) => {
                    let _ = self.kv.delete(format!("{STATUS_PREFIX}{name}")).await;
                    return Ok(Some(app));
                }
                // Written in between: read again (most likely a new deploy).
                Err(e) if e.kind() == kv::DeleteErrorKind::WrongLastRevision => continue,
                Err(e) => return Err(Error::nats(format!("delete app {name}"), e)),
            }
        }
        Err(Error::nats(
            format!("delete app {name}"),
            std::io::Error::other("the record changed 100 times while being deleted"),
        ))
    }

    /// An app's record and the KV revision it was read at; `None` when there
    /// is no app of that name.
    async fn entry(&self, name: &str) -> Result<Option<(u64, DeployedApp)>, Error> {
        let Some(entry) = self
            .kv
            .entry(format!("{APP_PREFIX}{name}"))
            .await
            .map_err(|e| Error::nats(format!("read app {name}"), e))?
            .filter(|e| e.operation == kv::Operation::Put)
        else {
            return Ok(None);
        };
        let app = serde_json::from_slice(&entry.value).map_err(|e| codec("decode", "app", e))?;
        Ok(Some((entry.revision, app)))
    }

    /// The revision an app had when it was last removed; 0 if never.
    async fn last_revision(&self, name: &str) -> u64 {
        match self.kv.get(format!("{LAST_REVISION_PREFIX}{name}")).await {
            Ok(Some(v)) => std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            _ => 0,
        }
    }

    /// Writes the reconciler's view of an app.
    ///
    /// # Errors
    /// [`Error::Nats`] on store failures.
    pub async fn put_status(&self, name: &str, status: &AppStatus) -> Result<(), Error> {
        let body = serde_json::to_vec(status).map_err(|e| codec("encode", "app status", e))?;
        self.kv
            .put(format!("{STATUS_PREFIX}{name}"), body.into())
            .await
            .map_err(|e| Error::nats(format!("write status of app {name}"), e))?;
        Ok(())
    }

    /// The reconciler's last view of an app.
    ///
    /// # Errors
    /// [`Error::Nats`] on store failures.
    pub async fn status(&self, name: &str) -> Result<Option<AppStatus>, Error> {
        let v = self
            .kv
            .get(format!("{STATUS_PREFIX}{name}"))
            .await
            .map_err(|e| Error::nats(format!("read status of app {name}"), e))?;
        v.map(|b| serde_json::from_slice(&b).map_err(|e| codec("decode", "app status", e)))
            .transpose()
    }

    /// The underlying KV store (the reconciler keeps its lease there).
    pub fn kv(&self) -> &kv::Store {
        &self.kv
    }
}
