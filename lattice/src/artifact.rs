//! Actor modules in the lattice's JetStream Object Store, addressed by digest.
//!
//! The CLI pushes a local `.wasm` file here; any host on any machine fetches it by
//! digest. A module can also be tagged `name:tag` (kept in the lattice KV bucket) so
//! users can start it again without the file.

use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store};
use tokio::io::AsyncReadExt;

use crate::{Error, digest::Digest, id::LatticeId, subject};

/// Largest module we accept, so a bad reference cannot make a host buffer gigabytes.
pub const MAX_ARTIFACT_BYTES: usize = 256 * 1024 * 1024;

/// Handle to a lattice's artifact store.
#[derive(Clone)]
pub struct ArtifactStore {
    lattice: LatticeId,
    objects: object_store::ObjectStore,
    state: kv::Store,
}

/// What [`ArtifactStore::upload`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The digest the bytes are stored under.
    pub digest: Digest,
    /// Whether they were sent (`false`: the store had them already).
    pub uploaded: bool,
}

/// Where a module reference points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// `sha256:<hex>`
    Digest(Digest),
    /// `name:tag`, resolved through the lattice KV.
    Tag {
        /// Artifact name.
        name: String,
        /// Tag, e.g. `latest` or `v1.2`.
        tag: String,
    },
}

impl Reference {
    /// Parses a digest or `name:tag` (a bare `name` means `name:latest`).
    ///
    /// # Errors
    /// [`Error::InvalidId`] when the name or tag has characters a KV key cannot hold.
    pub fn parse(s: &str) -> Result<Self, Error> {
        if s.starts_with("sha256:") {
            return Digest::parse(s).map(Reference::Digest);
        }
        let (name, tag) = s.split_once(':').unwrap_or((s, "latest"));
        crate::id::validate("artifact name", name)?;
        if tag.is_empty()
            || !tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            || tag.starts_with('.')
            || tag.ends_with('.')
        {
            return Err(Error::InvalidId {
                kind: "artifact tag",
                value: tag.to_string(),
                reason: "may contain only ASCII letters, digits, '-', '_' and inner '.'",
            });
        }
        Ok(Reference::Tag {
            name: name.to_string(),
            tag: tag.to_string(),
        })
    }
}

/// How long a write waits for a stream that does not answer yet.
pub(crate) const STREAM_SETTLE: Duration = Duration::from_secs(5);

/// Runs the write `op` again, for up to `within`, while nothing
/// answers on the stream's subjects; any other outcome is returned at once.
///
/// Right after a replicated bucket is created (or while its leader moves), the
/// stream leader's interest may not yet have reached the server this client is
/// connected to: a publish then gets "no responders" although the stream
/// exists. Such a publish stored nothing, so trying a key-value write again is
/// safe. An object is put chunk by chunk: when a later chunk is the one
/// refused (the leader moved mid-upload), the chunks stored before it stay
/// behind unreferenced until the bucket is purged; the retry stores the whole
/// object again.
pub(crate) async fn while_stream_settles<T, E, F, Fut>(within: Duration, mut op: F) -> Result<T, E>
where
    E: std::error::Error + 'static,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + within;
    let mut delay = Duration::from_millis(20);
    loop {
        match op().await {
            Err(e) if no_stream_answered(&e) && tokio::time::Instant::now() + delay < deadline => {
                tracing::debug!(error = %e, "the stream does not answer yet; trying again");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(500));
            }
            outcome => return outcome,
        }
    }
}

/// Whether `err`, or one of its causes, is a JetStream publish that nothing
/// answered. The object store keeps only the text of the publish error, so the
/// text async-nats gives that kind is what is looked for.
fn no_stream_answered(err: &(dyn std::error::Error + 'static)) -> bool {
    use jetstream::context::{PublishError, PublishErrorKind};
    let text = PublishErrorKind::StreamNotFound.to_string();
    let mut cause = Some(err);
    while let Some(e) = cause {
        if e.downcast_ref::<PublishError>()
            .is_some_and(|p| p.kind() == PublishErrorKind::StreamNotFound)
            || e.to_string().ends_with(&text)
        {
            return true;
        }
        cause = e.source();
    }
    false
}

fn tag_key(name: &str, tag: &str) -> String {
    format!("artifact.tag.{name}.{tag}")
}

impl ArtifactStore {
    /// Opens (creating when missing) the object store and KV bucket of `lattice`.
    ///
    /// # Errors
    /// [`Error::Nats`] when JetStream is not enabled on the server or the buckets
    /// cannot be created.
    pub async fn open(nats: async_nats::Client, lattice: &LatticeId) -> Result<Self, Error> {
        let replicas = replicas_for(&nats);
        let js = jetstream::new(nats);
        let bucket = subject::artifact_bucket(lattice);
        let config = |num_replicas| object_store::Config {
            bucket: bucket.clone(),
            description: Some(format!("Lattice {lattice}: actor modules by digest")),
            num_replicas,
            ..Default::default()
        };
        let objects = async {
            match js.get_object_store(&bucket).await {
                Ok(s) => Ok(s),
                Err(_) => match create_patiently(|| js.create_object_store(config(replicas))).await {
                    Ok(s) => Ok(s),
                    // Fewer servers than replicas, or another client created it first.
                    Err(_) => match js.get_object_store(&bucket).await {
                        Ok(s) => Ok(s),
                        Err(_) => js.create_object_store(config(1)).await.map_err(|e| {
                            Error::nats(
                                format!(
                                    "open artifact store {bucket} (is JetStream enabled? start nats-server with -js)"
                                ),
                                e,
                            )
                        }),
                    },
                },
            }
        };
        // Both buckets at once: each open is a round trip to the server.
        let (objects, state) = tokio::try_join!(objects, open_state_bucket(&js, lattice))?;
        Ok(ArtifactStore {
            lattice: lattice.clone(),
            objects,
            state,
        })
    }

    /// Stores `bytes` under their digest (skipping the upload when already present)
    /// and, when given, points `name:tag` at it.
    ///
    /// # Errors
    /// [`Error::TooLarge`] past [`MAX_ARTIFACT_BYTES`]; [`Error::Nats`] on store failures.
    pub async fn put(&self, bytes: &[u8], tag: Option<(&str, &str)>) -> Result<Digest, Error> {
        Ok(self.upload(bytes, tag).await?.digest)
    }

    /// [`ArtifactStore::put`], also saying whether the bytes had to be
    /// uploaded: a start sent before the upload finished may have failed for
    /// want of them.
    ///
    /// # Errors
    /// As [`ArtifactStore::put`].
    pub async fn upload(&self, bytes: &[u8], tag: Option<(&str, &str)>) -> Result<Upload, Error> {
        if bytes.len() > MAX_ARTIFACT_BYTES {
            return Err(Error::TooLarge {
                what: "artifact".into(),
                size: bytes.len(),
                max: MAX_ARTIFACT_BYTES,
            });
        }
        let digest = Digest::of(bytes);
        if let Some((name, tag)) = tag {
            Reference::parse(&format!("{name}:{tag}"))?;
        }
        // Whether the object and the tag are already there, asked at once.
        let (info, tagged) = tokio::join!(self.objects.info(digest.as_str()), async {
            match tag {
                Some((name, tag)) => self.state.get(tag_key(name, tag)).await.ok().flatten(),
                None => None,
            }
        });
        let present = matches!(info, Ok(info) if info.size == bytes.len() && !info.deleted);
        if !present {
            let name = digest.as_str();
            while_stream_settles(STREAM_SETTLE, || {
                let mut reader = bytes;
                async move { self.objects.put(name, &mut reader).await }
            })
            .await
            .map_err(|e| Error::nats(format!("upload artifact {digest}"), e))?;
        }
        if let Some((name, tag)) = tag
            && tagged.as_deref() != Some(digest.as_str().as_bytes())
        {
            while_stream_settles(STREAM_SETTLE, || {
                self.state
                    .put(tag_key(name, tag), digest.as_str().to_string().into())
            })
            .await
            .map_err(|e| Error::nats(format!("tag {name}:{tag}"), e))?;
        }
        Ok(Upload {
            digest,
            uploaded: !present,
        })
    }

    /// Resolves a digest or `name:tag` to a digest present in the store.
    ///
    /// # Errors
    /// [`Error::ArtifactNotFound`] when the tag or digest is unknown.
    pub async fn resolve(&self, reference: &str) -> Result<Digest, Error> {
        let not_found = |reason: String| Error::ArtifactNotFound {
            reference: reference.to_string(),
            lattice: self.lattice.to_string(),
            reason,
        };
        let digest = match Reference::parse(reference)? {
            Reference::Digest(d) => d,
            Reference::Tag { name, tag } => {
                let entry = self
                    .state
                    .get(tag_key(&name, &tag))
                    .await
                    .map_err(|e| Error::nats(format!("look up tag {name}:{tag}"), e))?
                    .ok_or_else(|| not_found("no such tag".into()))?;
                Digest::parse(&String::from_utf8_lossy(&entry))?
            }
        };
        match self.objects.info(digest.as_str()).await {
            Ok(info) if !info.deleted => Ok(digest),
            _ => Err(not_found(format!("no object {digest}"))),
        }
    }

    /// Fetches a module by digest and checks that the bytes match it.
    ///
    /// # Errors
    /// [`Error::ArtifactNotFound`] when missing; [`Error::CorruptArtifact`] when the stored
    /// bytes do not hash to `digest` (corruption).
    pub async fn get(&self, digest: &Digest) -> Result<Vec<u8>, Error> {
        let mut object =
            self.objects
                .get(digest.as_str())
                .await
                .map_err(|e| Error::ArtifactNotFound {
                    reference: digest.to_string(),
                    lattice: self.lattice.to_string(),
                    reason: e.to_string(),
                })?;
        // Checked before reading, and the read itself is capped: the object's
        // info comes from the store, which anyone with write access filled.
        let size = object.info().size;
        if size > MAX_ARTIFACT_BYTES {
            return Err(Error::TooLarge {
                what: format!("artifact {digest}"),
                size,
                max: MAX_ARTIFACT_BYTES,
            });
        }
        let mut bytes = Vec::with_capacity(size);
        let mut capped = (&mut object).take(MAX_ARTIFACT_BYTES as u64 + 1);
        let read = tokio::time::timeout(Duration::from_secs(60), capped.read_to_end(&mut bytes))
            .await
            .map_err(|_| Error::Timeout {
                what: format!("download of artifact {digest}"),
                timeout: Duration::from_secs(60),
            })?;
        read.map_err(|e| Error::Io {
            context: format!("download artifact {digest}"),
            source: e,
        })?;
        if bytes.len() > MAX_ARTIFACT_BYTES {
            return Err(Error::TooLarge {
                what: format!("artifact {digest} (larger than its recorded size)"),
                size: bytes.len(),
                max: MAX_ARTIFACT_BYTES,
            });
        }
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(Error::CorruptArtifact {
                digest: digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }
}

/// Opens (creating when missing) the lattice's KV bucket for shared state.
///
/// # Errors
/// [`Error::Nats`] when JetStream is unavailable.
pub async fn open_state_bucket(
    js: &jetstream::Context,
    lattice: &LatticeId,
) -> Result<kv::Store, Error> {
    let name = subject::state_bucket(lattice);
    if let Ok(s) = js.get_key_value(&name).await {
        return Ok(s);
    }
    let config = |num_replicas| kv::Config {
        bucket: name.clone(),
        description: format!("Lattice {lattice}: tags, links, config, leases"),
        history: 5,
        num_replicas,
        ..Default::default()
    };
    let replicas = replicas_for(&js.client());
    match create_patiently(|| js.create_key_value(config(replicas))).await {
        Ok(s) => Ok(s),
        // Fewer servers than replicas, or another client created it first.
        Err(_) => match js.get_key_value(&name).await {
            Ok(s) => Ok(s),
            Err(_) => js
                .create_key_value(config(1))
                .await
                .map_err(|e| Error::nats(format!("open state bucket {name}"), e)),
        },
    }
}

/// Attempts a bucket creation gets when JetStream does not answer in time.
const CREATE_TRIES: u32 = 3;

/// Runs the bucket creation `create` again when it timed out: a cluster under
/// load can take longer than the API timeout, which is no sign of too few
/// servers (the callers' reason to fall back to one replica). Creating a
/// stream that the timed-out attempt made after all, with the same config,
/// is no error.
async fn create_patiently<T, F, Fut>(
    create: F,
) -> Result<T, jetstream::context::CreateKeyValueError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, jetstream::context::CreateKeyValueError>>,
{
    let timed_out = |e: &jetstream::context::CreateKeyValueError| {
        e.kind() == jetstream::context::CreateKeyValueErrorKind::TimedOut
    };
    again_while("create a bucket", CREATE_TRIES, timed_out, create).await
}

/// Runs `op` again, up to `tries` attempts in all, while its error is one
/// `retry` accepts (a JetStream request that timed out); any other outcome,
/// and the last attempt's, is returned as it is.
pub(crate) async fn again_while<T, E, F, Fut>(
    what: &str,
    tries: u32,
    retry: impl Fn(&E) -> bool,
    mut op: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if attempt < tries && retry(&e) => {
                tracing::warn!(
                    what,
                    attempt,
                    "JetStream did not answer in time; trying again"
                );
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

/// Replicas for the lattice's JetStream buckets: 3 when the server is part of a
/// cluster (state survives the loss of one server), 1 on a single server.
/// Creation falls back to 1 when the cluster has fewer than 3 servers.
pub fn replicas_for(nats: &async_nats::Client) -> usize {
    if nats.server_info().cluster.is_some() {
        3
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publish_nothing_answered_is_told_apart() {
        use jetstream::context::{PublishError, PublishErrorKind};
        let unanswered = PublishError::new(PublishErrorKind::StreamNotFound);
        // How the object store wraps it: only the text survives.
        let chunk = object_store::PutError::with_source(
            object_store::PutErrorKind::PublishChunks,
            format!("failed getting chunk ack: {unanswered}"),
        );
        assert!(no_stream_answered(&chunk));
        let tag = kv::PutError::with_source(kv::PutErrorKind::Ack, unanswered);
        assert!(no_stream_answered(&tag));
        let timeout = kv::PutError::with_source(
            kv::PutErrorKind::Ack,
            PublishError::new(PublishErrorKind::TimedOut),
        );
        assert!(!no_stream_answered(&timeout));
        let other = object_store::PutError::with_source(
            object_store::PutErrorKind::PublishChunks,
            "failed getting chunk ack: maximum bytes exceeded",
        );
        assert!(!no_stream_answered(&other));
    }

    #[tokio::test]
    async fn writes_are_tried_again_while_the_stream_does_not_answer() {
        use jetstream::context::{PublishError, PublishErrorKind};
        let mut tries = 0;
        let out = while_stream_settles(STREAM_SETTLE, || {
            tries += 1;
            let n = tries;
            async move {
                if n < 3 {
                    Err(PublishError::new(PublishErrorKind::StreamNotFound))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(out.unwrap(), 3);

        // Anything else fails at once; an unanswered write gives up in time.
        let mut tries = 0;
        let out: Result<(), _> = while_stream_settles(STREAM_SETTLE, || {
            tries += 1;
            async { Err(PublishError::new(PublishErrorKind::TimedOut)) }
        })
        .await;
        assert!(out.is_err());
        assert_eq!(tries, 1);
        let started = tokio::time::Instant::now();
        let within = Duration::from_millis(200);
        let out: Result<(), _> = while_stream_settles(within, || async {
            Err(PublishError::new(PublishErrorKind::StreamNotFound))
        })
        .await;
        assert!(out.is_err());
        assert!(started.elapsed() <= within);
    }

    #[tokio::test]
    async fn timed_out_requests_get_a_bounded_number_of_attempts() {
        let timed_out = |e: &&str| *e == "timed out";
        let mut tries = 0;
        let out: Result<(), &str> = again_while("x", 3, timed_out, || {
            tries += 1;
            async { Err("timed out") }
        })
        .await;
        assert_eq!((out, tries), (Err("timed out"), 3));
        let mut tries = 0;
        let out: Result<(), &str> = again_while("x", 3, timed_out, || {
            tries += 1;
            async { Err("refused") }
        })
        .await;
        assert_eq!((out, tries), (Err("refused"), 1));
        let mut tries = 0;
        let out = again_while("x", 3, timed_out, || {
            tries += 1;
            let n = tries;
            async move { if n < 2 { Err("timed out") } else { Ok(n) } }
        })
        .await;
        assert_eq!(out, Ok(2));
    }

    #[test]
    fn references() {
        assert_eq!(
            Reference::parse("hello").unwrap(),
            Reference::Tag {
                name: "hello".into(),
                tag: "latest".into()
            }
        );
        assert!(matches!(
            Reference::parse("hello:v1.2").unwrap(),
            Reference::Tag { .. }
        ));
        assert!(Reference::parse("hello:").is_err());
        assert!(Reference::parse("he llo:x").is_err());
        assert!(Reference::parse("sha256:00").is_err());
    }
}
