//! Logging of repeated problems without a line per occurrence: the first occurrence
//! of a kind is logged in full; later ones are counted and summed up at most once per
//! [`SUMMARY_EVERY`], with their count. An L2 that answers garbage on every call (a
//! wrong database, a foreign value under our keys) costs one line a minute, not one
//! line per request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// How often a repeated problem is summed up, at most.
pub(crate) const SUMMARY_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Seen {
    /// When the last line about this kind was written.
    logged_at: Instant,
    /// Occurrences since then, not logged one by one.
    unlogged: u64,
}

/// Per-kind occurrence counts of repeated problems.
#[derive(Debug, Default)]
pub(crate) struct Quiet {
    // std Mutex: a map lookup per occurrence, never across an await.
    seen: Mutex<HashMap<&'static str, Seen>>,
}

/// Whether an occurrence is to be logged, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Say {
    /// The first of its kind (or the first after a quiet period): log it in full.
    First,
    /// Log a summary: this many occurred since the last line (this one included).
    Summary(u64),
    /// Count it only.
    Nothing,
}

impl Quiet {
    /// Records one occurrence of `kind`.
    pub(crate) fn occurred(&self, kind: &'static str) -> Say {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        match seen.get_mut(kind) {
            None => {
                seen.insert(
                    kind,
                    Seen {
                        logged_at: now,
                        unlogged: 0,
                    },
                );
                Say::First
            }
            Some(s) if now.duration_since(s.logged_at) >= SUMMARY_EVERY => {
                let n = s.unlogged + 1;
                s.logged_at = now;
                s.unlogged = 0;
                if n == 1 {
                    Say::First // a new episode after a quiet minute
                } else {
                    Say::Summary(n)
                }
            }
            Some(s) => {
                s.unlogged += 1;
                Say::Nothing
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_line_then_a_summary_per_minute() {
        let q = Quiet::default();
        assert_eq!(q.occurred("a"), Say::First);
        for _ in 0..1000 {
            assert_eq!(q.occurred("a"), Say::Nothing);
        }
        assert_eq!(q.occurred("b"), Say::First, "kinds are separate");
        tokio::time::advance(SUMMARY_EVERY).await;
        assert_eq!(q.occurred("a"), Say::Summary(1001));
        tokio::time::advance(SUMMARY_EVERY).await;
        assert_eq!(
            q.occurred("a"),
            Say::First,
            "a quiet minute ends the episode"
        );
    }
}
