//! Leader election through a JetStream KV lease.
//!
//! One key, `lease.reconciler`, holds the leader's host id. The leader rewrites it
//! every renew interval with compare-and-set on the KV revision. A follower that
//! sees the key's revision unchanged for `timeout` (measured on its own monotonic
//! clock) takes over with compare-and-set against the revision it saw; of several
//! racing followers exactly one wins. No wall-clock times are compared, so a host
//! whose clock is far off elects and follows correctly.

use std::time::Duration;

use async_nats::jetstream::kv;
use lattice::id::HostId;
use tokio::time::Instant;

/// The KV key of the reconciler lease.
pub const LEASE_KEY: &str = "lease.reconciler";

/// One host's view of the lease.
pub struct Lease {
    kv: kv::Store,
    me: HostId,
    timeout: Duration,
    /// Our revision while we lead.
    held: Option<u64>,
    /// Revision last seen as a follower, and when it changed.
    seen: Option<(u64, Instant)>,
}

impl Lease {
    /// A lease for host `me` that followers take over after `timeout` of silence.
    pub fn new(kv: kv::Store, me: HostId, timeout: Duration) -> Self {
        Lease {
            kv,
            me,
            timeout,
            held: None,
            seen: None,
        }
    }

    /// Whether this host currently holds the lease.
    pub fn is_leader(&self) -> bool {
        self.held.is_some()
    }

    /// Renews (leader) or checks and maybe takes over (follower). Returns whether
    /// this host leads after the step. Errors (NATS down) lose the lead.
    pub async fn step(&mut self) -> bool {
        let value: bytes::Bytes = self.me.as_str().to_string().into();
        if let Some(rev) = self.held {
            match self.kv.update(LEASE_KEY, value, rev).await {
                Ok(new) => self.held = Some(new),
                Err(e) => {
                    tracing::warn!(error = %e, "lost the reconciler lease");
                    self.held = None;
                    self.seen = None;
                }
            }
            return self.is_leader();
        }
        let entry = match self.kv.entry(LEASE_KEY).await {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the reconciler lease");
                return false;
            }
        };
        let now = Instant::now();
        match entry {
            None => {
                if let Ok(rev) = self.kv.create(LEASE_KEY, value).await {
                    self.take(rev);
                }
            }
            Some(e) if e.operation != kv::Operation::Put => {
                if let Ok(rev) = self.kv.update(LEASE_KEY, value, e.revision).await {
                    self.take(rev);
                }
            }
            Some(e) => match self.seen {
                Some((rev, since)) if rev == e.revision => {
                    if now.duration_since(since) >= self.timeout
                        && let Ok(new) = self.kv.update(LEASE_KEY, value, e.revision).await
                    {
                        tracing::info!(
                            previous = %String::from_utf8_lossy(&e.value),
                            "reconciler lease expired; taking over"
                        );
                        self.take(new);
                    }
                }
                _ => self.seen = Some((e.revision, now)),
            },
        }
        self.is_leader()
    }

    fn take(&mut self, rev: u64) {
        tracing::info!(host_id = %self.me, "this host is now the reconciler leader");
        self.held = Some(rev);
        self.seen = None;
    }

    /// Gives the lease up (graceful stop), so a follower takes over at once.
    pub async fn release(&mut self) {
        if let Some(rev) = self.held.take() {
            let _ = self.kv.delete_expect_revision(LEASE_KEY, Some(rev)).await;
        }
    }
}
