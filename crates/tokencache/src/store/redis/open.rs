//! Building a [`RedisStore`]: its options ([`RedisOptions`]) and the standalone,
//! Sentinel and Cluster constructors. None of them touches the network (see the module
//! docs of [`super`]): they parse the configuration and return at once.

use super::*;

/// Connection settings of a [`RedisStore`].
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Longest wait for one connection attempt (TCP + TLS + AUTH + `HELLO`). Default 2 s.
    pub connect_timeout: Duration,
    /// Longest wait for the answer to one command. Default 2 s.
    pub response_timeout: Duration,
    /// Retries of a failed command inside the Cluster client (redirections,
    /// reconnections). Default 2: a dead node fails fast; the cache has its own policy.
    pub cluster_retries: u32,
    /// Cluster: the longest wait for one master's answer to a command on one key. A
    /// master that misses it (or cannot be reached) twice in a row has its keys failed
    /// fast until a probe gets an answer, while the other masters serve theirs. Keep it
    /// below the cache's L2 timeout (250 ms by default). Default 200 ms. URL form:
    /// `?node_timeout_ms=`.
    pub node_timeout: Duration,
    /// PEM root certificate(s) to trust for TLS, **in addition to** the system store
    /// (or `SSL_CERT_FILE` / `SSL_CERT_DIR`): a private CA. URL form:
    /// `?tls_ca_file=/path/ca.pem`.
    pub tls_ca_pem: Option<Vec<u8>>,
    /// A client certificate and key for servers that demand one (`tls-auth-clients
    /// yes`). URL form: `?tls_cert_file=/path/cert.pem&tls_key_file=/path/key.pem`.
    pub tls_client: Option<TlsClientCert>,
    /// The name the server's certificate must be valid for, when it is not the host of
    /// the URL (an endpoint reached by IP address). Not for a Cluster, whose nodes are
    /// reached at the addresses they announce. URL form: `?tls_server_name=redis.internal`.
    pub tls_server_name: Option<String>,
    /// The layout new keys are written in (an existing key keeps its own): a Redis
    /// string (default) or .NET `RedisCache`'s hash. URL form: `?layout=dotnet`.
    pub layout: StoreLayout,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(2),
            cluster_retries: 2,
            node_timeout: Duration::from_millis(200),
            tls_ca_pem: None,
            tls_client: None,
            tls_server_name: None,
            layout: StoreLayout::String,
        }
    }
}

impl RedisOptions {
    fn tls(&self) -> StoreResult<Arc<tls::TlsSetup>> {
        tls::TlsSetup::new(
            self.tls_ca_pem.as_deref(),
            self.tls_client.as_ref(),
            self.tls_server_name.as_deref(),
        )
        .map(Arc::new)
    }
}

/// Credentials, database and protocol of a parsed URL, for our own connections.
fn redis_settings(info: &redis::ConnectionInfo) -> redis::RedisConnectionInfo {
    info.redis_settings().clone()
}

impl RedisStore {
    fn assemble(
        backend: Backend,
        endpoint: String,
        backplane: RedisBackplane,
        layout: StoreLayout,
        tls: Option<Arc<tls::TlsSetup>>,
        settings: &redis::RedisConnectionInfo,
    ) -> Self {
        Self {
            user: settings.username().map(str::to_string),
            has_password: settings.password().is_some(),
            backend,
            backplane: Arc::new(backplane),
            endpoint,
            link_add: link_script(LINK_ADD_BODY),
            link_members: link_script(LINK_MEMBERS_BODY),
            link_remove: link_script(LINK_REMOVE_BODY),
            cas: redis::Script::new(CAS_LUA),
            write_stamp: redis::Script::new(stamp::WRITE_STAMP_LUA),
            layouts: LayoutScripts::new(layout),
            tls,
        }
    }

    /// A store on one server (standalone), or on the master `target` names.
    fn single(connector: Connector, layout: StoreLayout) -> Self {
        let connector = Arc::new(connector);
        let endpoint = connector.endpoint();
        let tls = connector.tls.clone();
        let backplane = RedisBackplane::new(vec![connector.clone()], None);
        let c = connector.clone();
        let lazy = Lazy::new(move || {
            let c = c.clone();
            async move { c.connect().await }.boxed()
        });
        let settings = connector.settings().clone();
        let single = Arc::new(Single { lazy, connector });
        Self::assemble(
            Backend::Single(single),
            endpoint,
            backplane,
            layout,
            tls,
            &settings,
        )
    }

    /// A standalone store for a `redis://[user:pass@]host[:port][/db]` or `rediss://`
    /// URL (TLS per `options`). Does not connect (see the module docs).
    ///
    /// # Errors
    /// `Config` when the URL is not a valid Redis URL, or the TLS settings are unusable.
    pub fn standalone(url: &str, options: RedisOptions) -> StoreResult<Self> {
        let info = redis::IntoConnectionInfo::into_connection_info(url)
            .map_err(|e| config_error("redis (URL not shown)", &e))?;
        let tls = if is_tls(info.addr()) {
            Some(options.tls()?)
        } else {
            None
        };
        let target = match info.addr() {
            ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                Target::Node {
                    host: host.clone(),
                    port: *port,
                }
            }
            ConnectionAddr::Unix(path) => Target::Unix(path.clone()),
            other => {
                return Err(StoreError::new(
                    StoreErrorKind::Config,
                    addr_string(other),
                    "unsupported kind of Redis address",
                ))
            }
        };
        let connector = Connector::new(
            target,
            redis_settings(&info),
            tls,
            options.connect_timeout,
            options.response_timeout,
        );
        Ok(Self::single(connector, options.layout))
    }

    /// A store on the master that the Sentinels at `sentinels` (`host:port` each) name
    /// `master`, with the credentials and database of `node` (a `redis://[user:pass@]/db`
    /// style [`redis::RedisConnectionInfo`]), in TLS when `tls`. Does not connect.
    ///
    /// # Errors
    /// `Config` when there is no Sentinel, a `host:port` is invalid, or the TLS
    /// settings are unusable.
    pub fn sentinel(
        sentinels: &[String],
        master: &str,
        node: redis::RedisConnectionInfo,
        tls: bool,
        options: RedisOptions,
    ) -> StoreResult<Self> {
        let mut nodes = Vec::with_capacity(sentinels.len());
        for s in sentinels {
            let bad = || {
                StoreError::new(
                    StoreErrorKind::Config,
                    s.as_str(),
                    "a Sentinel must be given as host:port",
                )
            };
            let (h, p) = s.rsplit_once(':').ok_or_else(bad)?;
            let h = h.trim_start_matches('[').trim_end_matches(']');
            nodes.push((h.to_string(), p.parse::<u16>().map_err(|_| bad())?));
        }
        if nodes.is_empty() || master.is_empty() {
            return Err(StoreError::new(
                StoreErrorKind::Config,
                "redis+sentinel",
                "a Sentinel URL names at least one Sentinel and the master: redis+sentinel://HOST:PORT[,HOST:PORT…]/MASTER_NAME",
            ));
        }
        let tls = if tls { Some(options.tls()?) } else { None };
        let connector = Connector::new(
            Target::Sentinel(Arc::new(sentinel::Sentinels::new(
                nodes,
                master.to_string(),
            ))),
            node,
            tls,
            options.connect_timeout,
            options.response_timeout,
        );
        Ok(Self::single(connector, options.layout))
    }

    /// A Cluster store from seed node URLs (`redis://[user:pass@]host:port` or
    /// `rediss://`); credentials and TLS are taken from the first. Does not connect.
    ///
    /// # Errors
    /// `Config` when there is no seed, a URL is invalid, the TLS settings are unusable,
    /// or `tls_server_name` is set (a Cluster's nodes are checked against the addresses
    /// they announce).
    pub fn cluster(seeds: &[String], options: RedisOptions) -> StoreResult<Self> {
        let mut infos = Vec::with_capacity(seeds.len());
        for s in seeds {
            infos.push(
                redis::IntoConnectionInfo::into_connection_info(s.as_str())
                    .map_err(|e| config_error("redis cluster (URL not shown)", &e))?,
            );
        }
        if infos.is_empty() {
            return Err(StoreError::new(
                StoreErrorKind::Config,
                "redis cluster",
                "no seed node given",
            ));
        }
        let endpoint = infos
            .iter()
            .map(|i| addr_string(i.addr()))
            .collect::<Vec<_>>()
            .join(",");
        let tls = if infos.iter().any(|i| is_tls(i.addr())) {
            if options.tls_server_name.is_some() {
                return Err(StoreError::new(
                    StoreErrorKind::Config,
                    &endpoint,
                    "tls_server_name is not supported for a Cluster: its nodes are reached at the addresses they announce, and each certificate must be valid for that address (or announce host names: cluster-announce-hostname and cluster-preferred-endpoint-type hostname)",
                ));
            }
            Some(options.tls()?)
        } else {
            None
        };
        let mut seeds_for_backplane = Vec::with_capacity(infos.len());
        for info in &infos {
            let (host, port) = match info.addr() {
                ConnectionAddr::Tcp(h, p)
                | ConnectionAddr::TcpTls {
                    host: h, port: p, ..
                } => (h.clone(), *p),
                other => {
                    return Err(StoreError::new(
                        StoreErrorKind::Config,
                        addr_string(other),
                        "a Cluster seed must be host:port",
                    ))
                }
            };
            seeds_for_backplane.push(Arc::new(
                Connector::new(
                    Target::Node { host, port },
                    redis_settings(info),
                    tls.clone(),
                    options.connect_timeout,
                    options.response_timeout,
                )
                .in_cluster(),
            ));
        }
        let settings = redis_settings(&infos[0]);
        let mut builder = ClusterClientBuilder::new(infos);
        if let Some(t) = &tls {
            builder = builder.certs(t.certificates());
        }
        let client: ClusterClient = builder
            .connection_timeout(options.connect_timeout)
            .response_timeout(options.response_timeout)
            .retries(options.cluster_retries)
            .min_retry_wait(10)
            .max_retry_wait(200)
            .build()
            .map_err(|e| config_error(&endpoint, &e))?;
        let backend = Arc::new_cyclic(|me: &std::sync::Weak<cluster::ClusterBackend>| {
            let me = me.clone();
            let ep = endpoint.clone();
            let lazy = Lazy::new(move || {
                let client = client.clone();
                let me = me.clone();
                let ep = ep.clone();
                async move {
                    let mut conn = client
                        .get_async_connection()
                        .await
                        .map_err(|e| map_error(&ep, &e))?;
                    if let Some(me) = me.upgrade() {
                        me.after_connect(&mut conn).await?;
                    }
                    Ok(conn)
                }
                .boxed()
            });
            cluster::ClusterBackend::new(lazy, endpoint.clone(), options.node_timeout)
        });
        let discover = {
            let weak = Arc::downgrade(&backend);
            Arc::new(move || weak.upgrade().map(|b| b.known_nodes()).unwrap_or_default())
                as crate::backplane::redis::Discover
        };
        let backplane = RedisBackplane::new(seeds_for_backplane, Some(discover));
        Ok(Self::assemble(
            Backend::Cluster(backend),
            endpoint,
            backplane,
            options.layout,
            tls,
            &settings,
        ))
    }
}
