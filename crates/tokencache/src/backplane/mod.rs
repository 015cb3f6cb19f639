//! The backplane: how replicas tell each other to drop L1 entries.
//!
//! Every L2 write or removal of a partition publishes a [`Message`] on the key space's
//! channel (`{prefix}tc:backplane`); the other replicas drop that L1 entry and reread
//! L2 when it is next asked for. A sign-out publishes the user's revocation stamp, so
//! every replica refuses the user's older tokens at once. Messages carry keys, versions
//! and stamps, never token data.
//!
//! A [`Backplane`] delivers messages published on a channel to every subscription of
//! it, its own publisher's included (a replica ignores its own messages by their
//! origin, and uses its own heartbeats to know its subscription works). A subscription
//! is a stream that *ends* when it can no longer promise delivery (the connection
//! dropped, a local receiver lagged): messages may have been missed, so the subscriber
//! treats its L1 as suspect until it has subscribed again (see
//! [`TwoLevel`](crate::twolevel::TwoLevel)).
//!
//! Backends: [`LocalBackplane`] in process (memory and embedded stores: every cache of
//! one store in this process shares it), and Redis pub/sub ([`redis`]).

use async_trait::async_trait;
use futures::stream::BoxStream;
use std::fmt;
use std::sync::Arc;

use crate::store::{StoreError, StoreErrorKind, StoreResult};

pub mod redis;

pub use self::redis::RedisBackplane;

/// What a replica tells the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// The partition under `key` (full store key) changed in L2 (`version`: a digest of
    /// the bytes written; 0 for a removal).
    Changed {
        /// The full store key.
        key: String,
        /// A digest of what was written (0: removed).
        version: u64,
    },
    /// A user signed out at `at_ms` (ms since the epoch): refuse their tokens cached at
    /// or before.
    Revoked {
        /// The user's home account id.
        home_account_id: String,
        /// The revocation stamp, ms since the epoch.
        at_ms: i64,
    },
    /// "I am here": a replica's periodic check that its own subscription delivers.
    Heartbeat {
        /// A counter of the publisher's heartbeats.
        seq: u64,
    },
}

/// A message with the replica that published it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The publishing replica (random per cache instance).
    pub origin: u64,
    /// What it says.
    pub message: Message,
}

/// Why a payload on the channel is not a backplane message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a tokencache backplane message: {0}")]
pub struct BadMessage(&'static str);

const MAGIC: &str = "tc1";

impl Envelope {
    /// The wire form: `tc1|{origin hex}|c|{version hex}|{key}`, `…|r|{at_ms}|{home}`,
    /// `…|h|{seq}|`. The key or account id comes last, so it may contain `|`.
    pub fn encode(&self) -> Vec<u8> {
        let o = self.origin;
        match &self.message {
            Message::Changed { key, version } => format!("{MAGIC}|{o:x}|c|{version:x}|{key}"),
            Message::Revoked {
                home_account_id,
                at_ms,
            } => format!("{MAGIC}|{o:x}|r|{at_ms}|{home_account_id}"),
            Message::Heartbeat { seq } => format!("{MAGIC}|{o:x}|h|{seq:x}|"),
        }
        .into_bytes()
    }

    /// Reads the wire form (see [`encode`](Self::encode)).
    pub fn decode(bytes: &[u8]) -> Result<Self, BadMessage> {
        let s = std::str::from_utf8(bytes).map_err(|_| BadMessage("not UTF-8"))?;
        let mut parts = s.splitn(5, '|');
        let mut next = |what| parts.next().ok_or(BadMessage(what));
        if next("magic")? != MAGIC {
            return Err(BadMessage("unknown magic or version"));
        }
        let origin =
            u64::from_str_radix(next("origin")?, 16).map_err(|_| BadMessage("bad origin"))?;
        let kind = next("kind")?;
        let num = next("number")?;
        let rest = next("key")?;
        let message = match kind {
            "c" => Message::Changed {
                version: u64::from_str_radix(num, 16).map_err(|_| BadMessage("bad version"))?,
                key: rest.to_owned(),
            },
            "r" => Message::Revoked {
                at_ms: num.parse().map_err(|_| BadMessage("bad stamp"))?,
                home_account_id: rest.to_owned(),
            },
            "h" => Message::Heartbeat {
                seq: u64::from_str_radix(num, 16).map_err(|_| BadMessage("bad heartbeat"))?,
            },
            _ => return Err(BadMessage("unknown kind")),
        };
        if matches!(message, Message::Changed { .. } | Message::Revoked { .. }) && rest.is_empty() {
            return Err(BadMessage("empty key"));
        }
        Ok(Envelope { origin, message })
    }
}

/// Messages of one subscription; the stream ends when delivery can no longer be
/// promised (the subscriber must then assume it missed some).
pub type Subscription = BoxStream<'static, Vec<u8>>;

/// A publish/subscribe channel between the replicas sharing one store.
#[async_trait]
pub trait Backplane: Send + Sync + fmt::Debug + 'static {
    /// Publishes `payload` to every subscription of `channel` (this process's included).
    async fn publish(&self, channel: &str, payload: &[u8]) -> StoreResult<()>;

    /// Subscribes to `channel`: resolves once the subscription is in place (messages
    /// published after that are delivered), with the stream of its messages.
    async fn subscribe(&self, channel: &str) -> StoreResult<Subscription>;

    /// Where it runs, for logs (no credentials).
    fn endpoint(&self) -> String;
}

/// A shared backplane handle.
pub type SharedBackplane = Arc<dyn Backplane>;

/// In process: every subscriber of a channel gets every message published on it here.
/// A subscriber that falls more than [`LOCAL_CAPACITY`] messages behind has its stream
/// ended (it missed some).
#[derive(Debug)]
pub struct LocalBackplane {
    // tokio's broadcast: one sender, any number of receivers; lagging is reported.
    sender: tokio::sync::broadcast::Sender<(Arc<str>, Arc<[u8]>)>,
    name: String,
}

/// Messages a local subscriber may fall behind before its stream ends.
pub const LOCAL_CAPACITY: usize = 4096;

impl LocalBackplane {
    /// A new in-process backplane; `name` is for logs.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            sender: tokio::sync::broadcast::channel(LOCAL_CAPACITY).0,
            name: name.into(),
        }
    }
}

#[async_trait]
impl Backplane for LocalBackplane {
    async fn publish(&self, channel: &str, payload: &[u8]) -> StoreResult<()> {
        // No receiver is not an error: nobody listens yet.
        let _ = self.sender.send((Arc::from(channel), Arc::from(payload)));
        Ok(())
    }

    async fn subscribe(&self, channel: &str) -> StoreResult<Subscription> {
        let rx = self.sender.subscribe();
        let channel: Arc<str> = Arc::from(channel);
        let stream = futures::stream::unfold(rx, move |mut rx| {
            let channel = channel.clone();
            async move {
                loop {
                    match rx.recv().await {
                        Ok((c, p)) if c == channel => return Some((p.to_vec(), rx)),
                        Ok(_) => continue,
                        // lagged or closed: delivery can no longer be promised
                        Err(_) => return None,
                    }
                }
            }
        });
        Ok(Box::pin(stream))
    }

    fn endpoint(&self) -> String {
        format!("in-process ({})", self.name)
    }
}

/// An error of the backplane itself, in the store's error type (one gate for both).
pub(crate) fn error(
    kind: StoreErrorKind,
    endpoint: &str,
    message: impl Into<String>,
) -> StoreError {
    StoreError::new(kind, endpoint, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[test]
    fn messages_round_trip_and_garbage_is_refused() {
        for message in [
            Message::Changed {
                key: "p:oid.tid|odd".into(),
                version: 0xdead_beef,
            },
            Message::Changed {
                key: "k".into(),
                version: 0,
            },
            Message::Revoked {
                home_account_id: "oid.tid".into(),
                at_ms: 1_800_000_000_123,
            },
            Message::Heartbeat { seq: 7 },
        ] {
            let e = Envelope {
                origin: u64::MAX,
                message,
            };
            assert_eq!(Envelope::decode(&e.encode()).unwrap(), e);
        }
        for bad in [
            &b""[..],
            b"tc1",
            b"tc2|1|c|1|k",
            b"tc1|zz|c|1|k",
            b"tc1|1|x|1|k",
            b"tc1|1|c|1|",
            b"tc1|1|r|notanumber|h",
            b"tc1|1|c|99999999999999999999|k",
            &[0xff, 0xfe],
        ] {
            assert!(Envelope::decode(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn local_subscribers_get_their_channel_only() {
        let b = LocalBackplane::new("test");
        let mut s1 = b.subscribe("a").await.unwrap();
        let mut s2 = b.subscribe("a").await.unwrap();
        b.publish("b", b"other").await.unwrap();
        b.publish("a", b"one").await.unwrap();
        assert_eq!(s1.next().await.unwrap(), b"one");
        assert_eq!(s2.next().await.unwrap(), b"one");
    }

    #[tokio::test]
    async fn a_lagging_local_subscriber_is_told_it_missed_some() {
        let b = LocalBackplane::new("test");
        let mut s = b.subscribe("a").await.unwrap();
        for i in 0..(LOCAL_CAPACITY + 10) {
            b.publish("a", format!("{i}").as_bytes()).await.unwrap();
        }
        assert_eq!(
            s.next().await,
            None,
            "the stream ends: messages were missed"
        );
    }
}
