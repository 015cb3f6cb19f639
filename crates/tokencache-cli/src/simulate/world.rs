//! The world the caches live in: which tokens the identity provider has issued, which
//! are still usable, who signed out. It turns each event of the traffic into the same
//! steps for every policy, and it is the judge of "orphaned" (docs/design.md §12):
//! a stored partition is orphaned when nothing in it can ever be used again.

use std::collections::HashMap;
use std::sync::Arc;
use tokencache::partition::assertion_hash;
use tokencache::sample;
use tokencache::TokenResponse;

use super::workload::{JobSpec, Rng, UserSpec, TENANTS};

/// The tenants users come from (the first is the samples' tenant).
pub(crate) const TENANT_IDS: [&str; TENANTS] = [
    sample::TENANT,
    "3c5e0a9d-6f21-4b8e-9c47-1d2e3f4a5b6c",
    "8a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
    "d4c3b2a1-0f9e-4d8c-b7a6-5f4e3d2c1b0a",
];
/// The web API's client id (the web app's is [`sample::CLIENT_ID`]).
pub(crate) const API_CLIENT: &str = "0b7e1f4e-5a43-4d1c-9d3b-a91000000001";
/// What the web app asks for to call the web API.
pub(crate) const API_SCOPES: &[&str] = sample::USER_SCOPES[1];
/// What the web app asks for at sign-in (Graph).
pub(crate) const GRAPH_SCOPES: &[&str] = sample::USER_SCOPES[0];
/// What the web API asks for on behalf of the user.
pub(crate) const DOWNSTREAM: &[&str] = &["api://downstream/Orders.Read"];
/// What the web API asks for as itself (client credentials).
pub(crate) const APP_SCOPE: &str = "api://inventory-api/.default";
/// MSAL's skew: a token expiring within 5 minutes is renewed.
pub(crate) const SKEW: i64 = 300;

/// How to rebuild a token response the provider already issued: only needed when a
/// policy lost it and must store it again to keep serving the same traffic.
#[derive(Debug, Clone)]
pub(crate) struct Regen {
    kind: RegenKind,
    oid: String,
    tid: &'static str,
    issued: i64,
    lifetime: i64,
}

#[derive(Debug, Clone, Copy)]
enum RegenKind {
    User(&'static [&'static str]),
    Obo,
    App,
}

impl Regen {
    /// The response again (same claims, same times).
    pub(crate) fn make(&self) -> Result<TokenResponse, String> {
        let r = match self.kind {
            RegenKind::User(scopes) => {
                sample::user_response(&self.oid, self.tid, scopes, self.issued, self.lifetime)
            }
            RegenKind::Obo => {
                sample::obo_response(&self.oid, self.tid, DOWNSTREAM, self.issued, self.lifetime)
            }
            RegenKind::App => sample::app_response(APP_SCOPE, self.issued, self.lifetime),
        };
        r.map_err(|e| format!("sample token response: {e}"))
    }
}

/// What one policy is asked to do; the same steps go to every policy.
#[derive(Debug)]
pub(crate) enum Step {
    /// Interactive sign-in (authorization code): Graph and web-API tokens for the web app.
    SignIn {
        home: String,
        tenant: &'static str,
        responses: Vec<(&'static [&'static str], TokenResponse)>,
    },
    /// The web app redeems the user's refresh token for a new web-API token.
    UserRefresh {
        home: String,
        tenant: &'static str,
        response: TokenResponse,
    },
    /// The web app's cached web-API token is still good.
    UserHit { home: String, current: Regen },
    /// The web API gets a token on behalf of the caller (new incoming assertion).
    OboAcquire {
        assertion: Arc<str>,
        tenant: &'static str,
        response: TokenResponse,
    },
    /// The web API's OBO token for this assertion is still good.
    OboHit {
        assertion: Arc<str>,
        tenant: &'static str,
        current: Regen,
    },
    /// The web API gets an app token (client credentials) for a tenant.
    AppAcquire {
        tenant: &'static str,
        response: TokenResponse,
    },
    /// The web API's app token is still good.
    AppHit {
        tenant: &'static str,
        current: Regen,
    },
    /// A long-running OBO job starts: tokens with a refresh token under its session key.
    JobStart {
        key: String,
        home: String,
        tenant: &'static str,
        response: TokenResponse,
    },
    /// The job redeems its refresh token.
    JobRefresh {
        key: String,
        home: String,
        tenant: &'static str,
        response: TokenResponse,
    },
    /// The job's token is still good.
    JobHit {
        key: String,
        home: String,
        tenant: &'static str,
        current: Regen,
    },
    /// The user signs out of the web app.
    SignOut { home: String },
}

#[derive(Debug, Default)]
struct UserState {
    home: String,
    rt_issued: Option<i64>,
    signed_out: bool,
    signed_out_at: Option<i64>,
    at_issued: i64,
    at_exp: i64,
    at_lifetime: i64,
    assertion: Option<Arc<str>>,
    obo_issued: i64,
    obo_exp: i64,
    obo_lifetime: i64,
}

#[derive(Debug, Default)]
struct JobState {
    started: bool,
    cancelled: bool,
    rt_issued: i64,
    at_issued: i64,
    at_exp: i64,
}

#[derive(Debug, Default, Clone, Copy)]
struct AppState {
    issued: i64,
    exp: i64,
}

/// What a store key is, to the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    /// A user partition (`oid.tid`).
    User,
    /// An OBO partition (assertion hash).
    Obo,
    /// A long-running OBO session partition.
    Session,
    /// An app partition.
    App,
}

impl KeyKind {
    /// Position in per-kind arrays.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
    /// All kinds, in index order.
    pub(crate) const ALL: [KeyKind; 4] =
        [KeyKind::User, KeyKind::Obo, KeyKind::Session, KeyKind::App];
}

/// The identity provider's view of every token issued so far.
#[derive(Debug)]
pub(crate) struct World {
    users: Vec<UserSpec>,
    jobs: Vec<JobSpec>,
    user_state: Vec<UserState>,
    job_state: Vec<JobState>,
    apps: [AppState; TENANTS],
    by_home: HashMap<String, usize>,
    by_session: HashMap<String, usize>,
    /// OBO partition key → the assertion's `exp`.
    by_obo: HashMap<String, i64>,
    jobs_of: Vec<Vec<usize>>,
    rt_lifetime: i64,
    /// Access tokens live `lifetime` to 1.5 × `lifetime` (Entra randomises 60-90 min).
    lifetime: i64,
    rng: Rng,
}

fn sample_err(e: impl std::fmt::Display) -> String {
    format!("sample token response: {e}")
}

impl World {
    /// A world for these users and jobs, with refresh tokens living `rt_lifetime`
    /// seconds past their last use and access tokens (incoming assertions too) living
    /// `lifetime` to 1.5 × `lifetime` seconds, drawn from `seed`.
    pub(crate) fn new(
        users: Vec<UserSpec>,
        jobs: Vec<JobSpec>,
        rt_lifetime: i64,
        lifetime: i64,
        seed: u64,
    ) -> Self {
        let mut by_home = HashMap::with_capacity(users.len());
        let user_state = users
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let home = format!("{}.{}", u.oid, TENANT_IDS[u.tenant]);
                by_home.insert(home.clone(), i);
                UserState {
                    home,
                    ..UserState::default()
                }
            })
            .collect();
        let mut jobs_of = vec![Vec::new(); users.len()];
        for (j, job) in jobs.iter().enumerate() {
            jobs_of[job.user].push(j);
        }
        let job_state = jobs.iter().map(|_| JobState::default()).collect();
        World {
            users,
            jobs,
            user_state,
            job_state,
            apps: [AppState::default(); TENANTS],
            by_home,
            by_session: HashMap::new(),
            by_obo: HashMap::new(),
            jobs_of,
            rt_lifetime,
            lifetime,
            rng: Rng::new(seed.wrapping_add(0x7E57)),
        }
    }

    /// The lifetime of the next access token the provider issues.
    fn draw_lifetime(&mut self) -> i64 {
        let l = self.lifetime.max(1) as u64;
        self.rng.secs(l, l + l / 2) as i64
    }

    fn tenant(&self, user: usize) -> &'static str {
        TENANT_IDS[self.users[user].tenant]
    }

    /// A web API call by `user` at `now` (seconds): the web app's token, the web API's
    /// OBO token and its app token.
    pub(crate) fn call(&mut self, user: usize, now: i64) -> Result<Vec<Step>, String> {
        let (l, l_obo, l_app) = (
            self.draw_lifetime(),
            self.draw_lifetime(),
            self.draw_lifetime(),
        );
        let tid = self.tenant(user);
        let oid = self.users[user].oid.clone();
        let rtl = self.rt_lifetime;
        let st = &mut self.user_state[user];
        let mut steps = Vec::with_capacity(3);
        let rt_ok = !st.signed_out && st.rt_issued.is_some_and(|r| now < r + rtl);
        let new_tokens = if !rt_ok {
            let graph =
                sample::user_response(&oid, tid, GRAPH_SCOPES, now, l).map_err(sample_err)?;
            let api = sample::user_response(&oid, tid, API_SCOPES, now, l).map_err(sample_err)?;
            st.signed_out = false;
            steps.push(Step::SignIn {
                home: st.home.clone(),
                tenant: tid,
                responses: vec![(GRAPH_SCOPES, graph), (API_SCOPES, api)],
            });
            true
        } else if st.at_exp - SKEW <= now {
            let api = sample::user_response(&oid, tid, API_SCOPES, now, l).map_err(sample_err)?;
            steps.push(Step::UserRefresh {
                home: st.home.clone(),
                tenant: tid,
                response: api,
            });
            true
        } else {
            steps.push(Step::UserHit {
                home: st.home.clone(),
                current: Regen {
                    kind: RegenKind::User(API_SCOPES),
                    oid: oid.clone(),
                    tid,
                    issued: st.at_issued,
                    lifetime: st.at_lifetime,
                },
            });
            false
        };
        if new_tokens {
            // New refresh token, new access token for the web API = a new incoming assertion.
            st.rt_issued = Some(now);
            st.at_issued = now;
            st.at_exp = now + l;
            st.at_lifetime = l;
            let assertion: Arc<str> = sample::incoming_assertion(&oid, tid, now, now + l).into();
            self.by_obo.insert(assertion_hash(&assertion), now + l);
            st.assertion = Some(assertion);
            st.obo_exp = 0;
        }
        let assertion = st.assertion.clone().ok_or("no incoming assertion")?;
        if st.obo_exp - SKEW <= now {
            let response =
                sample::obo_response(&oid, tid, DOWNSTREAM, now, l_obo).map_err(sample_err)?;
            st.obo_issued = now;
            st.obo_exp = now + l_obo;
            st.obo_lifetime = l_obo;
            steps.push(Step::OboAcquire {
                assertion,
                tenant: tid,
                response,
            });
        } else {
            steps.push(Step::OboHit {
                assertion,
                tenant: tid,
                current: Regen {
                    kind: RegenKind::Obo,
                    oid,
                    tid,
                    issued: st.obo_issued,
                    lifetime: st.obo_lifetime,
                },
            });
        }
        let app = &mut self.apps[self.users[user].tenant];
        if app.exp - SKEW <= now {
            let response = sample::app_response(APP_SCOPE, now, l_app).map_err(sample_err)?;
            *app = AppState {
                issued: now,
                exp: now + l_app,
            };
            steps.push(Step::AppAcquire {
                tenant: tid,
                response,
            });
        } else {
            steps.push(Step::AppHit {
                tenant: tid,
                current: Regen {
                    kind: RegenKind::App,
                    oid: String::new(),
                    tid,
                    issued: app.issued,
                    lifetime: app.exp - app.issued,
                },
            });
        }
        Ok(steps)
    }

    /// The end of a visit: a sign-out (which also ends the user's running jobs) or
    /// nothing at all (the user just leaves).
    pub(crate) fn end_visit(&mut self, user: usize, sign_out: bool, now: i64) -> Vec<Step> {
        if !sign_out {
            return Vec::new();
        }
        let st = &mut self.user_state[user];
        st.signed_out = true;
        st.signed_out_at = Some(now);
        st.at_exp = 0;
        for &j in &self.jobs_of[user] {
            if self.job_state[j].started {
                self.job_state[j].cancelled = true;
            }
        }
        vec![Step::SignOut {
            home: self.user_state[user].home.clone(),
        }]
    }

    /// A tick of a long-running OBO job.
    pub(crate) fn job_tick(&mut self, job: usize, now: i64) -> Result<Vec<Step>, String> {
        let l = self.draw_lifetime();
        let user = self.jobs[job].user;
        let tid = self.tenant(user);
        let oid = self.users[user].oid.clone();
        let key = self.jobs[job].key.clone();
        let home = self.user_state[user].home.clone();
        let js = &mut self.job_state[job];
        if js.cancelled {
            return Ok(Vec::new());
        }
        if !js.started || js.at_exp - SKEW <= now {
            if js.started && now >= js.rt_issued + self.rt_lifetime {
                js.cancelled = true; // its refresh token died: the job cannot go on
                return Ok(Vec::new());
            }
            let response =
                sample::user_response(&oid, tid, DOWNSTREAM, now, l).map_err(sample_err)?;
            let first = !js.started;
            js.started = true;
            js.rt_issued = now;
            js.at_issued = now;
            js.at_exp = now + l;
            // Under the session key itself (as Microsoft.Identity.Web keys it) and under
            // the namespaced hash (docs/design.md §4.1), whichever a policy writes.
            self.by_session.insert(key.clone(), job);
            self.by_session.insert(session_partition_key(&key), job);
            return Ok(vec![if first {
                Step::JobStart {
                    key,
                    home,
                    tenant: tid,
                    response,
                }
            } else {
                Step::JobRefresh {
                    key,
                    home,
                    tenant: tid,
                    response,
                }
            }]);
        }
        Ok(vec![Step::JobHit {
            key,
            home,
            tenant: tid,
            current: Regen {
                kind: RegenKind::User(DOWNSTREAM),
                oid,
                tid,
                issued: js.at_issued,
                lifetime: js.at_exp - js.at_issued,
            },
        }])
    }

    /// What a bare partition key is and whether it can still be used at `now_ms`:
    /// `None` for a key this world never produced.
    pub(crate) fn judge(&self, key: &str, now_ms: u64) -> Option<(KeyKind, bool)> {
        let before = |deadline_secs: i64| now_ms < (deadline_secs.max(0) as u64) * 1000;
        if let Some(&u) = self.by_home.get(key) {
            let st = &self.user_state[u];
            let usable = st.rt_issued.is_some_and(|r| {
                before(r + self.rt_lifetime) && st.signed_out_at.is_none_or(|s| s < r)
            });
            return Some((KeyKind::User, usable));
        }
        if let Some(&exp) = self.by_obo.get(key) {
            return Some((KeyKind::Obo, before(exp)));
        }
        if let Some(&j) = self.by_session.get(key) {
            let js = &self.job_state[j];
            let st = &self.user_state[self.jobs[j].user];
            let usable = js.started
                && before(js.rt_issued + self.rt_lifetime)
                && st.signed_out_at.is_none_or(|s| s < js.rt_issued);
            return Some((KeyKind::Session, usable));
        }
        let app_key = |t: &str| format!("{API_CLIENT}_{t}_AppTokenCache");
        for (i, t) in TENANT_IDS.iter().enumerate() {
            if key == app_key(t) {
                return Some((KeyKind::App, before(self.apps[i].exp)));
            }
        }
        None
    }
}

/// The key of a long-running OBO session partition in its own namespace:
/// `obo-session:{base64url(sha256(session key))}` (docs/design.md §4.1).
pub(crate) fn session_partition_key(session_key: &str) -> String {
    tokencache::partition::session_partition_key(session_key)
}
