//! Replicas agree: this replica's side of the backplane.
//!
//! * **Publishing.** Every L2 write or removal of a partition that L2 took publishes
//!   `Changed {key, version}`; a sign-out publishes `Revoked {user, stamp}`. Sent from a
//!   task of its own, so a caller dropped after its write still tells the others.
//! * **Listening.** A task subscribed to the key space's channel drops the L1 entry of
//!   every key another replica changed, and records the stamps of users they signed
//!   out. A replica ignores its own messages (by origin).
//! * **Loads racing a message.** A load reads L2, then fills L1. If a message for any
//!   key arrived in between (a write the load may have missed), the loaded value is
//!   served to its waiters but not kept in L1 (an invalidation counter, checked before
//!   the fill), so L1 never keeps a value older than a message it has seen.
//! * **Reconnect safety.** When the subscription ends (connection dropped, a local
//!   receiver lagged) or this replica stops hearing its own heartbeats (published every
//!   [`BackplaneOptions::heartbeat`], a gap of three is a loss), messages may have been
//!   missed: L1 is cleared at once and *bypassed* until the replica has subscribed
//!   again, then cleared once more (what was filled while the subscription was down may
//!   predate a missed message). Bypassing rather than only clearing means no read is
//!   served from an L1 that cannot be invalidated; the price is L2 reads during the
//!   outage of the backplane, which is usually an outage of L2 too.

use std::hash::BuildHasher;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

use super::quiet::Say;
use super::stats::bump;
use super::Core;
use crate::backplane::{Envelope, Message, SharedBackplane};

/// Settings of the backplane.
#[derive(Debug, Clone)]
pub struct BackplaneOptions {
    /// Listen and publish (when the store has a backplane). Default true.
    pub enabled: bool,
    /// How often this replica publishes a heartbeat to check its own subscription; a
    /// gap of three means the subscription is lost. Default 1 s.
    pub heartbeat: Duration,
}

impl Default for BackplaneOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            heartbeat: Duration::from_secs(1),
        }
    }
}

/// The state of this replica's backplane subscription, as [`TwoLevel::backplane_status`](super::TwoLevel::backplane_status) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackplaneStatus {
    /// No backplane (the store has none, or it is disabled): L1 is used as it is.
    None,
    /// Subscribed: L1 is in use.
    Subscribed,
    /// Not subscribed (yet, or any more): L1 is bypassed (unless L2 fails too) while
    /// the replica subscribes again. The reason, without secrets.
    Down(String),
    /// The store refused the subscription for lack of permission (a Redis ACL user
    /// without the channel, `NOPERM`): L1 stays bypassed, every read goes to L2, until
    /// the permission is granted (the replica keeps trying). The reason names the channel.
    Refused(String),
}

impl BackplaneStatus {
    /// `none`, `subscribed`, `down` or `refused`.
    pub fn as_str(&self) -> &'static str {
        match self {
            BackplaneStatus::None => "none",
            BackplaneStatus::Subscribed => "subscribed",
            BackplaneStatus::Down(_) => "down",
            BackplaneStatus::Refused(_) => "refused",
        }
    }

    /// Why it is down or refused.
    pub fn reason(&self) -> Option<&str> {
        match self {
            BackplaneStatus::Down(r) | BackplaneStatus::Refused(r) => Some(r),
            _ => None,
        }
    }
}

/// Whether a store error is a refusal for lack of permission (Redis `NOPERM`).
fn is_no_permission(e: &str) -> bool {
    e.contains("NOPERM") || e.contains("NoPerm") || e.contains("no permissions")
}

/// The pauses before the retries of a failed publish.
const PUBLISH_RETRIES: [Duration; 3] = [
    Duration::from_millis(50),
    Duration::from_millis(250),
    Duration::from_secs(1),
];

/// A random id for this cache instance (messages name their origin).
pub(super) fn new_origin() -> u64 {
    // RandomState is seeded from the OS per instance: distinct across replicas.
    std::collections::hash_map::RandomState::new().hash_one(std::process::id())
}

/// The version of bytes written to L2 (a fast digest; informational for receivers).
pub(super) fn version_of(bytes: &[u8]) -> u64 {
    foldhash::fast::FixedState::with_seed(0x7463_6163_6865).hash_one(bytes) | 1
}

impl Core {
    /// Tells the other replicas that `full` changed in L2 (`version` 0: removed).
    pub(super) fn publish_changed(&self, full: &str, version: u64) {
        self.publish(Message::Changed {
            key: full.to_owned(),
            version,
        });
    }

    /// Sends `message` on the backplane from a task of its own (no-op without one).
    pub(super) fn publish(&self, message: Message) {
        let Some(bp) = self.backplane.clone() else {
            return;
        };
        let Some(this) = self.me.upgrade() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let payload = Envelope {
            origin: self.origin,
            message,
        }
        .encode();
        bump(&self.counters.published);
        // Not through the L2 gate: a backplane message is no L2 call (it must not be the
        // breaker's probe, nor be skipped by it); bounded by the same timeout.
        // A failed publish is retried a few times (a dropped connection is usually back
        // within a second): the others' L1 would otherwise keep the old entry until
        // their own L1 deadline. The task holds the cache weakly between attempts.
        let weak = Arc::downgrade(&this);
        drop(this);
        rt.spawn(async move {
            let mut attempt = 0;
            let (this, error) = loop {
                let Some(this) = weak.upgrade() else {
                    return; // the cache is gone
                };
                let sent =
                    tokio::time::timeout(this.l2_timeout, bp.publish(&this.channel, &payload));
                let error = match sent.await {
                    Ok(Ok(())) => return,
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("no answer within {:?}", this.l2_timeout),
                };
                // A refusal for lack of permission is not retried: it will not pass.
                let pause = PUBLISH_RETRIES.get(attempt).filter(|_| !is_no_permission(&error));
                let Some(pause) = pause else {
                    break (this, error);
                };
                attempt += 1;
                bump(&this.counters.publish_retries);
                drop(this);
                tokio::time::sleep(*pause).await;
            };
            if is_no_permission(&error) {
                // the channel's refusal: one line per replica, whichever of the
                // subscription and a publish meets it first
                this.say_refused("publish on", &error);
                return;
            }
            match this.quiet.occurred("backplane_publish") {
                Say::First => tracing::warn!(endpoint = %bp.endpoint(), cause = %error, "backplane publish at {} failed ({error}), also when retried {} times; other replicas may keep an old L1 entry until its L1 deadline; more of these are summed up once a minute", bp.endpoint(), PUBLISH_RETRIES.len()),
                Say::Summary(n) => tracing::warn!(endpoint = %bp.endpoint(), count = n, "{n} more backplane publishes failed in the last minute (the latest: {error})"),
                Say::Nothing => {}
            }
        });
    }

    /// Whether L1 may be used now: false while the subscription is down and L2 is
    /// healthy (L1 could be stale); while L2 fails too, L1 serves (no replica can store
    /// anything newer in L2 meanwhile), and is cleared when the subscription is back.
    #[inline]
    pub(super) fn l1_trusted(&self) -> bool {
        !self.l1_suspect.load(Ordering::Acquire) || self.l2_failing.load(Ordering::Acquire)
    }

    /// The invalidation counter (see the module docs).
    #[inline]
    pub(super) fn invalidations(&self) -> u64 {
        self.invalidations.load(Ordering::Acquire)
    }

    fn on_payload(&self, payload: &[u8], heard_own: &mut Instant) {
        let env = match Envelope::decode(payload) {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(error = %e, "backplane: a message that is not ours; ignored");
                return;
            }
        };
        if env.origin == self.origin {
            if let Message::Heartbeat { .. } = env.message {
                *heard_own = Instant::now();
            }
            return;
        }
        match env.message {
            Message::Changed { key, .. } => {
                self.invalidations.fetch_add(1, Ordering::AcqRel);
                if let Some(bare) = self.keys.strip(&key) {
                    self.forget_l1(bare);
                }
                bump(&self.counters.invalidated);
                self.metrics.invalidated.increment(1);
            }
            Message::Revoked {
                home_account_id,
                at_ms,
            } => {
                self.invalidations.fetch_add(1, Ordering::AcqRel);
                self.revoke_locally_ms(&home_account_id, at_ms);
                self.forget_l1(&home_account_id);
                bump(&self.counters.invalidated);
                self.metrics.invalidated.increment(1);
            }
            Message::Heartbeat { .. } => {}
        }
    }

    /// L1 can no longer be invalidated: clear it and bypass it until resubscribed.
    fn backplane_lost(&self, why: &str) {
        let was = self.l1_suspect.swap(true, Ordering::AcqRel);
        self.invalidations.fetch_add(1, Ordering::AcqRel);
        if let Some(l1) = &self.l1 {
            l1.clear();
        }
        let refused = is_no_permission(why);
        let status = if refused {
            BackplaneStatus::Refused(format!(
                "subscribing to the channel {} was refused for lack of permission ({why}); grant the Redis user that channel, e.g. ACL SETUSER <user> &{}*",
                self.channel,
                self.keys.prefix()
            ))
        } else {
            BackplaneStatus::Down(why.to_string())
        };
        let said_refused = {
            let mut st = self
                .backplane_status
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let before = matches!(*st, BackplaneStatus::Refused(_));
            *st = status;
            before
        };
        if refused && !said_refused {
            bump(&self.counters.backplane_losses);
            self.metrics.backplane_losses.increment(1);
            self.say_refused("subscribe to", why);
        } else if !was {
            bump(&self.counters.backplane_losses);
            self.metrics.backplane_losses.increment(1);
            tracing::warn!(
                endpoint = %self.backplane_endpoint(),
                cause = why,
                "backplane subscription at {} lost ({why}): L1 cleared and bypassed until resubscribed",
                self.backplane_endpoint(),
            );
        }
    }

    /// Logs, once until the channel is granted, that the Redis user may not use the
    /// backplane channel (`what`: `subscribe to` or `publish on`, whichever met the
    /// refusal first; the other is the same ACL rule and says nothing).
    fn say_refused(&self, what: &str, why: &str) {
        if self.refusal_said.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::error!(
            endpoint = %self.backplane_endpoint(),
            channel = %self.channel,
            cause = why,
            "backplane at {}: the Redis user may not use the channel {} (refused to {what} it: {why}); L1 is bypassed and every read goes to L2, and other replicas are not told of this one's writes, until it may (grant it with ACL SETUSER <user> &{}*)",
            self.backplane_endpoint(),
            self.channel,
            self.keys.prefix(),
        );
    }

    fn backplane_back(&self) {
        self.refusal_said.store(false, Ordering::Release);
        self.invalidations.fetch_add(1, Ordering::AcqRel);
        if let Some(l1) = &self.l1 {
            l1.clear(); // filled while messages could be missed
        }
        *self
            .backplane_status
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = BackplaneStatus::Subscribed;
        if self.l1_suspect.swap(false, Ordering::AcqRel) {
            tracing::info!(endpoint = %self.backplane_endpoint(), "backplane subscribed again: L1 in use");
        }
    }

    fn backplane_endpoint(&self) -> String {
        self.backplane
            .as_ref()
            .map_or_else(String::new, |b| b.endpoint())
    }
}

/// Starts the listener and the heartbeat of `core` (when it has a backplane and a
/// Tokio runtime is there). Both end when the cache is dropped.
pub(super) fn start(core: &Arc<Core>, options: &BackplaneOptions) {
    let Some(bp) = core.backplane.clone() else {
        return;
    };
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let every = options.heartbeat.max(Duration::from_millis(10));
    rt.spawn(listen(Arc::downgrade(core), bp, every));
    rt.spawn(heartbeat(Arc::downgrade(core), every));
}

async fn heartbeat(weak: Weak<Core>, every: Duration) {
    let mut seq = 0u64;
    loop {
        {
            let Some(core) = weak.upgrade() else {
                return;
            };
            seq += 1;
            core.publish(Message::Heartbeat { seq });
        }
        tokio::time::sleep(every).await;
    }
}

/// Why a subscription ended.
enum Ended {
    Dropped,
    Stream,
    Silent,
}

async fn listen(weak: Weak<Core>, bp: SharedBackplane, every: Duration) {
    let mut backoff = Duration::from_millis(100);
    let mut first = true;
    loop {
        let Some(channel) = weak.upgrade().map(|c| c.channel.clone()) else {
            return;
        };
        match bp.subscribe(&channel).await {
            Ok(stream) => {
                backoff = Duration::from_millis(100);
                let Some(core) = weak.upgrade() else {
                    return;
                };
                if first {
                    *core
                        .backplane_status
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = BackplaneStatus::Subscribed;
                } else {
                    core.backplane_back();
                }
                first = false;
                // Check at once that our own messages come back.
                core.publish(Message::Heartbeat { seq: 0 });
                drop(core);
                let ended = consume(&weak, stream, every).await;
                let Some(core) = weak.upgrade() else {
                    return;
                };
                match ended {
                    Ended::Dropped => return,
                    Ended::Stream => core.backplane_lost("the subscription ended"),
                    Ended::Silent => core.backplane_lost("no heartbeat of ours came back"),
                }
            }
            Err(e) => {
                let Some(core) = weak.upgrade() else {
                    return;
                };
                first = false;
                core.backplane_lost(&e.to_string());
                drop(core);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn consume(
    weak: &Weak<Core>,
    mut stream: crate::backplane::Subscription,
    every: Duration,
) -> Ended {
    let mut heard_own = Instant::now();
    let gap = every * 3;
    loop {
        let next = tokio::time::timeout_at(heard_own + gap, stream.next()).await;
        let Some(core) = weak.upgrade() else {
            return Ended::Dropped;
        };
        match next {
            Ok(Some(payload)) => core.on_payload(&payload, &mut heard_own),
            Ok(None) => return Ended::Stream,
            Err(_) => return Ended::Silent,
        }
    }
}
