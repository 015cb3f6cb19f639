//! `tokencache check`: what a deployment's Redis and its user allow, one requirement a
//! line, each `ok` or what is missing with the fix (docs/design.md §16). The library
//! runs the same check when a cache is built on Redis and logs, once, what fails.
//!
//! Requirements, in order (a line that cannot be checked because an earlier one failed
//! says so): **connect** (the server or the Sentinels answer, in the URL's mode),
//! **tls** (handshake, certificate trusted and valid for the name; or not used),
//! **auth**, **server** (Redis or Valkey 6.2 or later), **keys** (write, read, TTL and
//! delete a key under the prefix), **scripts** (the Lua scripts tokencache runs, on keys
//! under the prefix), **pubsub** (subscribe to and publish on `{prefix}tc:backplane`, and
//! the message comes back), **cluster** (every one of the 16,384 slots is served; or
//! not a Cluster). Nothing printed holds a secret: the password is never in a line, and
//! the values written are the check's own.

use std::fmt;
use std::time::Duration;

use futures::StreamExt;

use super::*;
use crate::backplane::{Backplane, Envelope, Message};

/// How one requirement came out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    /// It holds (with what was found).
    Ok(String),
    /// It does not hold: what is missing, and the fix.
    Missing {
        /// What is missing.
        what: String,
        /// What to do about it.
        fix: String,
    },
    /// Not checked (an earlier requirement failed).
    Skipped(String),
}

/// One requirement and how it came out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckLine {
    /// `connect`, `tls`, `auth`, `server`, `keys`, `scripts`, `pubsub`, `cluster`.
    pub name: &'static str,
    /// How it came out.
    pub outcome: CheckOutcome,
}

impl fmt::Display for CheckLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            CheckOutcome::Ok(detail) => write!(f, "{:<8} ok: {detail}", self.name),
            CheckOutcome::Missing { what, fix } => {
                write!(f, "{:<8} MISSING: {what}; fix: {fix}", self.name)
            }
            CheckOutcome::Skipped(why) => write!(f, "{:<8} skipped: {why}", self.name),
        }
    }
}

/// Every requirement of one store, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// Where (no credentials).
    pub endpoint: String,
    /// One line per requirement.
    pub lines: Vec<CheckLine>,
}

impl CheckReport {
    /// Whether every requirement holds.
    pub fn passed(&self) -> bool {
        self.lines
            .iter()
            .all(|l| matches!(l.outcome, CheckOutcome::Ok(_)))
    }

    /// The lines that do not hold.
    pub fn missing(&self) -> impl Iterator<Item = &CheckLine> {
        self.lines
            .iter()
            .filter(|l| matches!(l.outcome, CheckOutcome::Missing { .. }))
    }

    /// The line of one requirement.
    pub fn line(&self, name: &str) -> Option<&CheckLine> {
        self.lines.iter().find(|l| l.name == name)
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in &self.lines {
            writeln!(f, "{l}")?;
        }
        Ok(())
    }
}

impl CheckReport {
    /// Logs, in one line, what does not hold (nothing when all holds, or when the
    /// server could not be reached at all: the cache's start-up probe reports that).
    pub fn log_missing(&self) {
        if self
            .line("connect")
            .is_some_and(|l| !matches!(l.outcome, CheckOutcome::Ok(_)))
        {
            tracing::debug!(endpoint = %self.endpoint, "Redis requirements not checked: no connection");
            return;
        }
        let missing: Vec<String> = self
            .missing()
            .map(|l| match &l.outcome {
                CheckOutcome::Missing { what, fix } => format!("{}: {what} (fix: {fix})", l.name),
                _ => String::new(),
            })
            .collect();
        if missing.is_empty() {
            tracing::debug!(endpoint = %self.endpoint, "Redis meets tokencache's requirements");
            return;
        }
        tracing::warn!(
            endpoint = %self.endpoint,
            missing = missing.len(),
            "Redis at {} lacks what tokencache needs: {} (`tokencache check` prints each requirement)",
            self.endpoint,
            missing.join("; ")
        );
    }
}

/// The ACL rule that lets a user do everything tokencache does under `prefix`, for a
/// store in `mode` (`standalone`, `sentinel`: writes wait for a replica, `+wait`;
/// `cluster`: the slot map, `+cluster|slots`).
pub fn acl_rule(user: &str, prefix: &str, mode: &str) -> String {
    let extra = match mode {
        "cluster" => " +cluster|slots",
        "sentinel" => " +wait",
        _ => "",
    };
    format!(
        "ACL SETUSER {user} on ~{prefix}* &{prefix}* +@read +@write +@scripting +@pubsub -@dangerous +ping +time{extra}"
    )
}

/// Whether an error says the ACL refused something.
fn denied(message: &str) -> bool {
    message.contains("NOPERM")
        || message.contains("NoPerm")
        || message.contains("can't run this command")
}

/// The server's reason, without the hint the store adds to refusals.
fn reason(message: &str) -> &str {
    message.split(" (NOPERM: ").next().unwrap_or(message)
}

fn ok(name: &'static str, detail: impl Into<String>) -> CheckLine {
    CheckLine {
        name,
        outcome: CheckOutcome::Ok(detail.into()),
    }
}

fn missing(name: &'static str, what: impl Into<String>, fix: impl Into<String>) -> CheckLine {
    CheckLine {
        name,
        outcome: CheckOutcome::Missing {
            what: what.into(),
            fix: fix.into(),
        },
    }
}

fn skipped(name: &'static str, why: &str) -> CheckLine {
    CheckLine {
        name,
        outcome: CheckOutcome::Skipped(why.to_string()),
    }
}

/// How long the check waits for its own message on the backplane.
const ECHO_WAIT: Duration = Duration::from_secs(3);

impl RedisStore {
    fn user(&self) -> String {
        self.user.clone().unwrap_or_else(|| "default".to_string())
    }

    fn tls_detail(&self, endpoint: &str) -> String {
        match &self.tls {
            None => "not used (redis://)".to_string(),
            Some(t) => {
                let host = endpoint
                    .rsplit_once(':')
                    .map_or(endpoint, |(h, _)| h)
                    .to_string();
                format!(
                    "certificate verified for {}; trusted roots: {} from the system store{}{}",
                    t.name_for(&host),
                    t.roots.system,
                    if t.roots.extra > 0 {
                        format!(" + {} from tls_ca_file", t.roots.extra)
                    } else {
                        String::new()
                    },
                    if t.has_client_cert() {
                        "; client certificate presented"
                    } else {
                        ""
                    }
                )
            }
        }
    }

    /// Checks every requirement of tokencache against this store's server and user,
    /// with keys and the backplane channel under `prefix` (see the module docs).
    /// Writes and removes a few keys of its own (`{prefix}tc:check:…`) and publishes one
    /// heartbeat that replicas ignore.
    pub async fn check(&self, prefix: &str) -> CheckReport {
        let mut lines = Vec::new();
        let user = self.user();
        let rule = acl_rule(&user, prefix, self.mode());
        // connect, tls, auth, server
        let connected = self.conn().await;
        let info = match &connected {
            Ok(_) => self.server_info().await,
            Err(e) => Err(e.clone()),
        };
        // The cache probes L2 with PING while it is failing: a user must be allowed it.
        let ping = match &info {
            Ok(_) => Store::health(self).await.err(),
            Err(_) => None,
        };
        let endpoint = match &self.backend {
            Backend::Single(s) => match s.lazy.get().await {
                Ok((c, _)) => c.endpoint,
                Err(_) => self.endpoint.clone(),
            },
            Backend::Cluster(_) => self.endpoint.clone(),
        };
        let info = match info {
            Ok(info) => {
                let how = match &self.backend {
                    Backend::Single(s) => match &s.connector.target {
                        Target::Sentinel(sent) => format!(
                            "master {:?} at {endpoint}, named by {}",
                            sent.master_name(),
                            sent.endpoint()
                        ),
                        _ => format!("{endpoint} ({})", self.mode()),
                    },
                    Backend::Cluster(c) => {
                        format!("{} (cluster of {} masters)", self.endpoint, {
                            let mut m: Vec<_> =
                                c.slot_map().iter().map(|r| r.master.clone()).collect();
                            m.sort();
                            m.dedup();
                            m.len()
                        })
                    }
                };
                match ping {
                    Some(e) if denied(&e.message) => lines.push(missing(
                        "connect",
                        format!("{how}, but PING is refused: {}", reason(&e.message)),
                        format!("allow PING (the cache probes L2 with it): ACL SETUSER {user} +ping (all tokencache needs: {rule})"),
                    )),
                    Some(e) => lines.push(missing("connect", format!("{how}, but PING failed: {}", e.message), "as the message says")),
                    None => lines.push(ok("connect", how)),
                }
                lines.push(ok("tls", self.tls_detail(&endpoint)));
                lines.push(ok(
                    "auth",
                    if user == "default" && !self.has_password {
                        "no password (default user)".to_string()
                    } else {
                        format!("as user {user}")
                    },
                ));
                match &info {
                    Some(i) => lines.push(ok(
                        "server",
                        format!(
                            "{} (at least {} needed: GETEX, ZADD GT)",
                            i.product(),
                            MIN_VERSION
                        ),
                    )),
                    None => lines.push(missing(
                        "server",
                        "the server would not say its version (HELLO and INFO refused)",
                        "allow HELLO or INFO to the user, and make sure the server is Redis or Valkey 6.2 or later",
                    )),
                }
                info
            }
            Err(e) => {
                self.connect_failure(&e, &mut lines, &endpoint, &rule);
                for name in ["keys", "scripts", "pubsub", "cluster"] {
                    lines.push(skipped(name, "no connection"));
                }
                return CheckReport {
                    endpoint: self.endpoint.clone(),
                    lines,
                };
            }
        };
        let _ = info;
        let tag = format!("{:016x}", rand_u64());
        lines.push(self.check_keys(prefix, &tag, &rule).await);
        lines.push(self.check_scripts(prefix, &tag, &rule).await);
        lines.push(self.check_pubsub(prefix, &rule).await);
        lines.push(self.check_cluster(&rule).await);
        CheckReport {
            endpoint: self.endpoint.clone(),
            lines,
        }
    }

    fn connect_failure(
        &self,
        e: &StoreError,
        lines: &mut Vec<CheckLine>,
        endpoint: &str,
        rule: &str,
    ) {
        let m = &e.message;
        let tls_problem = m.starts_with("TLS");
        let auth_problem = m.contains("authentication failed")
            || m.contains("requires a password")
            || m.contains("WRONGPASS");
        let server_problem = m.contains("too old")
            || m.contains("is a Redis Cluster node")
            || m.contains("is a Sentinel")
            || m.contains("not a Cluster node");
        let refused = denied(m);
        if !(tls_problem || auth_problem || server_problem || refused) {
            let fix = match e.kind {
                StoreErrorKind::Timeout => {
                    "check the host, the port and firewalls; a TLS port needs rediss://"
                }
                StoreErrorKind::Config => {
                    "fix the URL or the server's configuration as the message says"
                }
                _ => "check that the server runs and the host and port of the URL",
            };
            lines.push(missing("connect", format!("{} ({})", m, e.endpoint), fix));
            for name in ["tls", "auth", "server"] {
                lines.push(skipped(name, "no connection"));
            }
            return;
        }
        lines.push(ok("connect", format!("{endpoint} answers")));
        if tls_problem {
            lines.push(missing("tls", m.clone(), "as the message says (tls_ca_file, tls_server_name, tls_cert_file + tls_key_file, or redis:// vs rediss://)"));
            lines.push(skipped("auth", "no TLS session"));
            lines.push(skipped("server", "no TLS session"));
            return;
        }
        lines.push(ok("tls", self.tls_detail(endpoint)));
        if auth_problem {
            lines.push(missing("auth", m.clone(), "give the right user and password (URL, TOKENCACHE_REDIS_PASSWORD or TOKENCACHE_REDIS_PASSWORD_FILE)"));
            lines.push(skipped("server", "not authenticated"));
            return;
        }
        lines.push(ok("auth", format!("as user {}", self.user())));
        if refused {
            lines.push(missing(
                "server",
                reason(m).to_string(),
                format!("all tokencache needs: {rule}"),
            ));
        } else {
            lines.push(missing("server", m.clone(), "as the message says"));
        }
    }

    async fn check_keys(&self, prefix: &str, tag: &str, rule: &str) -> CheckLine {
        let key = format!("{prefix}tc:check:{tag}");
        let user = self.user();
        let fix_keys = format!(
            "allow the keys under the prefix: ACL SETUSER {user} ~{prefix}* +@read +@write{} (all tokencache needs: {rule})",
            if self.mode() == "sentinel" { " +wait" } else { "" }
        );
        let step = async {
            let set: StoreResult<String> = self
                .on_key(
                    &key,
                    self.query(
                        redis::cmd("SET")
                            .arg(&key)
                            .arg("tokencache-check")
                            .arg("PX")
                            .arg(60_000)
                            .clone(),
                    ),
                )
                .await;
            set.map_err(|e| ("write", e))?;
            // behind Sentinels, a write waits for a replica (WAIT)
            let mut conn = self.conn().await.map_err(|e| ("write", e))?;
            conn.confirm_write(&self.endpoint)
                .await
                .map_err(|e| ("the replica's confirmation (WAIT) of the write", e))?;
            let got: Option<String> = self
                .on_key(&key, self.query(redis::cmd("GET").arg(&key).clone()))
                .await
                .map_err(|e| ("read", e))?;
            if got.as_deref() != Some("tokencache-check") {
                return Err((
                    "read",
                    StoreError::new(
                        StoreErrorKind::BadData,
                        &self.endpoint,
                        "read back something else than written",
                    ),
                ));
            }
            let ttl: i64 = self
                .on_key(&key, self.query(redis::cmd("PTTL").arg(&key).clone()))
                .await
                .map_err(|e| ("TTL", e))?;
            if !(1..=60_000).contains(&ttl) {
                return Err((
                    "TTL",
                    StoreError::new(
                        StoreErrorKind::BadData,
                        &self.endpoint,
                        format!("the key's TTL is {ttl} ms, not the 60 s set"),
                    ),
                ));
            }
            let n: i64 = self
                .on_key(&key, self.query(redis::cmd("DEL").arg(&key).clone()))
                .await
                .map_err(|e| ("delete", e))?;
            if n != 1 {
                return Err((
                    "delete",
                    StoreError::new(
                        StoreErrorKind::BadData,
                        &self.endpoint,
                        "the key was not there to delete",
                    ),
                ));
            }
            Ok(())
        };
        match step.await {
            Ok(()) => ok(
                "keys",
                format!("write, read, TTL and delete under {prefix:?}"),
            ),
            Err((what, e)) => missing(
                "keys",
                format!("{what} of {key:?} failed: {}", reason(&e.message)),
                if denied(&e.message) {
                    fix_keys
                } else {
                    "as the message says".to_string()
                },
            ),
        }
    }

    async fn check_scripts(&self, prefix: &str, tag: &str, rule: &str) -> CheckLine {
        let key = format!("{prefix}tc:check:{tag}:script");
        let links = format!("{prefix}tc:links:check-{tag}");
        let step = async {
            Store::set(
                self,
                &key,
                b"tokencache-check",
                Some(Duration::from_secs(60)),
            )
            .await
            .map_err(|e| ("the write script", e))?;
            Store::get_with_layout(self, &key)
                .await
                .map_err(|e| ("the read script", e))?;
            Store::compare_and_swap(
                self,
                &key,
                Some(b"tokencache-check"),
                None,
                EntryExpiry::default(),
            )
            .await
            .map_err(|e| ("the compare-and-swap script", e))?;
            Store::link_add(self, &links, "member", Some(Duration::from_secs(60)))
                .await
                .map_err(|e| ("the link-set script (ZADD GT)", e))?;
            Store::link_members(self, &links)
                .await
                .map_err(|e| ("the link-set read script", e))?;
            Store::link_remove(self, &links, &["member".to_string()])
                .await
                .map_err(|e| ("the link-set removal script", e))?;
            Ok(())
        };
        let result = step.await;
        // whatever happened, leave nothing behind
        let _ = Store::remove_many(self, &[key.clone(), links.clone()]).await;
        match result {
            Ok(()) => ok(
                "scripts",
                "the read, write, compare-and-swap and link-set scripts run",
            ),
            Err((what, e)) => {
                let m = &e.message;
                let user = self.user();
                let fix = if m.contains("can't run this command") {
                    format!("allow the commands the scripts call (TIME, TYPE, GET, SET, PTTL, PEXPIRE, ZADD, ZRANGE, HMGET, HSET…): ACL SETUSER {user} +@read +@write +time (all tokencache needs: {rule})")
                } else if m.contains("keys used as arguments") {
                    format!("allow the keys under the prefix: ACL SETUSER {user} ~{prefix}* (all tokencache needs: {rule})")
                } else if denied(m) {
                    format!("allow Lua scripts: ACL SETUSER {user} +@scripting +time (all tokencache needs: {rule})")
                } else if m.to_ascii_lowercase().contains("unknown command")
                    || m.contains("syntax error")
                    || m.contains("GT")
                {
                    format!("upgrade to Redis or Valkey {MIN_VERSION} or later")
                } else {
                    "as the message says".to_string()
                };
                missing("scripts", format!("{what} failed: {}", reason(m)), fix)
            }
        }
    }

    async fn check_pubsub(&self, prefix: &str, rule: &str) -> CheckLine {
        let channel = format!("{prefix}tc:backplane");
        let user = self.user();
        let fix = format!(
            "allow the backplane channel: ACL SETUSER {user} &{prefix}* +@pubsub (all tokencache needs: {rule})"
        );
        let mut sub = match self.backplane.subscribe(&channel).await {
            Ok(s) => s,
            Err(e) => {
                return missing(
                    "pubsub",
                    format!("subscribing to {channel:?} failed: {}", reason(&e.message)),
                    if denied(&e.message) {
                        fix
                    } else {
                        "as the message says".to_string()
                    },
                )
            }
        };
        let origin = rand_u64();
        let probe = Envelope {
            origin,
            message: Message::Heartbeat { seq: 0 },
        };
        if let Err(e) = self.backplane.publish(&channel, &probe.encode()).await {
            return missing(
                "pubsub",
                format!("publishing on {channel:?} failed: {}", reason(&e.message)),
                if denied(&e.message) {
                    fix
                } else {
                    "as the message says".to_string()
                },
            );
        }
        let heard = tokio::time::timeout(ECHO_WAIT, async {
            while let Some(m) = sub.next().await {
                if Envelope::decode(&m).is_ok_and(|e| e.origin == origin) {
                    return true;
                }
            }
            false
        })
        .await;
        match heard {
            Ok(true) => ok("pubsub", format!("subscribe and publish on {channel:?}")),
            _ => missing(
                "pubsub",
                format!(
                    "a message published on {channel:?} did not come back within {ECHO_WAIT:?}"
                ),
                "check that the server delivers pub/sub (a proxy in between may not)",
            ),
        }
    }

    async fn check_cluster(&self, rule: &str) -> CheckLine {
        let Backend::Cluster(c) = &self.backend else {
            return ok("cluster", format!("not a cluster ({})", self.mode()));
        };
        let mut conn = match c.lazy.get().await {
            Ok((conn, _)) => conn,
            Err(e) => return missing("cluster", e.message, "as the message says"),
        };
        let ranges = match c.refresh_map(&mut conn).await {
            Ok(r) => r,
            Err(e) => {
                let fix = if denied(&e.message) {
                    format!("allow CLUSTER SLOTS: ACL SETUSER {} +cluster|slots (all tokencache needs: {rule})", self.user())
                } else {
                    "as the message says".to_string()
                };
                return missing(
                    "cluster",
                    format!("CLUSTER SLOTS failed: {}", e.message),
                    fix,
                );
            }
        };
        let covered = cluster::covered(&ranges);
        let mut masters: Vec<_> = ranges.iter().map(|r| r.master.clone()).collect();
        masters.sort();
        masters.dedup();
        if covered == 16384 {
            ok(
                "cluster",
                format!("all 16384 slots served by {} masters", masters.len()),
            )
        } else {
            missing(
                "cluster",
                format!("only {covered} of 16384 slots are served; keys of the others fail"),
                "assign the missing slots (redis-cli --cluster fix HOST:PORT)",
            )
        }
    }
}

/// A random 64-bit number (the OS-seeded hasher: distinct per call and process).
fn rand_u64() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(std::time::Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_as_one_line_each() {
        let l = ok("keys", "write, read");
        assert_eq!(l.to_string(), "keys     ok: write, read");
        let m = missing("pubsub", "subscribing failed", "ACL SETUSER app &p*");
        assert_eq!(
            m.to_string(),
            "pubsub   MISSING: subscribing failed; fix: ACL SETUSER app &p*"
        );
        let report = CheckReport {
            endpoint: "h:1".into(),
            lines: vec![l.clone(), skipped("cluster", "no connection")],
        };
        assert!(!report.passed());
        assert_eq!(report.missing().count(), 0);
        let report = CheckReport {
            endpoint: "h:1".into(),
            lines: vec![l, m],
        };
        assert_eq!(report.missing().count(), 1);
        assert!(report.line("pubsub").is_some());
    }

    #[test]
    fn the_rule_covers_the_prefix() {
        assert_eq!(
            acl_rule("app", "P", "standalone"),
            "ACL SETUSER app on ~P* &P* +@read +@write +@scripting +@pubsub -@dangerous +ping +time"
        );
        assert!(acl_rule("app", "P", "cluster").ends_with(" +time +cluster|slots"));
        assert!(acl_rule("app", "P", "sentinel").ends_with(" +time +wait"));
    }
}
