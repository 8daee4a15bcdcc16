//! The running node: the store, one task per link, the Kafka listeners, the admin
//! listener, and orderly shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use shadowlink_storage::{FileCache, LogConfig, StorageError};
use tokio::sync::watch;
use tokio::task::{JoinError, JoinHandle};

use crate::admin;
use crate::cluster::Cluster;
use crate::config::{Config, ConfigError, KeyedListener};
use crate::groups::{Coordinator, GroupConfig};
use crate::link::pause::Pauses;
use crate::link::LinkRunner;
use crate::mirror::{MirrorError, OwnTopicError, Store};
use crate::scrub::Scrub;
use crate::server::{self, ServerContext};
use crate::status::{ListenerReport, Status};
use crate::switchover::peers::Peers;
use crate::topic_partition::TopicPartition;
use crate::txn::TxnCoordinator;

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot open the data directory: {0}")]
    Storage(#[from] StorageError),
    #[error("cannot finish an interrupted failover: {0}")]
    Failover(#[from] MirrorError),
    /// A blocking start-up task panicked or was cancelled.
    #[error("cannot {action} {}: the task failed: {source}", path.display())]
    Task {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: JoinError,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

/// A started node. Dropping it does not stop it; call [`Daemon::shutdown`].
pub struct Daemon {
    pub store: Arc<Store>,
    /// Where the first Kafka-API listener (`[kafka]`) accepts clients (the real port
    /// when configured as 0).
    pub kafka_addr: SocketAddr,
    /// Every Kafka-API listener by name, the first included, as bound.
    pub listeners: Vec<(String, SocketAddr)>,
    /// Where the admin HTTP listener accepts requests, when `[admin]` is configured.
    pub admin_addr: Option<SocketAddr>,
    pub status: Arc<Status>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Daemon {
    /// Opens the data directory (recovering every log) and starts the links.
    pub async fn start(config: Config) -> Result<Daemon, StartError> {
        let log_config = LogConfig {
            segment_bytes: config.storage.segment_bytes,
            persist: config.persist_mode()?,
            fsync_delay: config.storage.fault_fsync_delay,
            fsync_fail_after: config.storage.fault_fsync_fail_after,
            open_files: FileCache::new(
                config
                    .storage
                    .max_open_files
                    .unwrap_or_else(FileCache::default_limit),
            ),
            ..LogConfig::default()
        };
        let data_dir = config.data_dir.clone();
        let store = tokio::task::spawn_blocking(move || Store::open(&data_dir, log_config))
            .await
            .map_err(task_failed("open", &config))??;
        let store = Arc::new(store);
        // Before any link starts: a link whose filter matches an owned topic's name must
        // find it owned, not create a shadow of it. A cluster creates them through etcd.
        if config.cluster.is_none() {
            create_owned_topics(&config, &store).await?;
        }
        // A failover cut short by a crash is finished before anything else runs.
        let resumed = store.clone();
        tokio::task::spawn_blocking(move || crate::failover::resume_interrupted(&resumed))
            .await
            .map_err(task_failed("resume failovers in", &config))??;
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        let bound = bind_listeners(&config).await?;
        let kafka_addr = bound[0].1;
        let group_config = GroupConfig {
            offsets_retention: config.groups.offsets_retention,
            ..GroupConfig::default()
        };
        let groups = Arc::new(Coordinator::open_with(&config.data_dir, group_config)?);
        // Transactions decided before a crash get their markers before any client is
        // served.
        let (data_dir, txn_store, txn_groups) =
            (config.data_dir.clone(), store.clone(), groups.clone());
        let txns = tokio::task::spawn_blocking(move || {
            TxnCoordinator::open(&data_dir, txn_store, txn_groups)
        })
        .await
        .map_err(task_failed("open transactions in", &config))??;
        let txns = Arc::new(txns);
        let peers = open_peers(&config, &store).await?;
        tasks.push(tokio::spawn(crate::txn::sweep_loop(
            txns.clone(),
            stopped.clone(),
        )));
        let cluster = config
            .cluster
            .as_ref()
            .map(|_| Cluster::open(config.node_id, &config.data_dir));
        // Before any listener serves: a cluster node never coordinates a group on its own.
        if let (Some(cluster), Some(settings)) = (&cluster, &config.cluster) {
            crate::cluster::share_offsets(&groups, cluster.clone(), settings);
            cluster.declare_topics(&config.topics, settings.replication_factor);
        }
        let context = Arc::new(server_context(
            &config,
            store.clone(),
            (groups.clone(), txns),
            peers.clone(),
            cluster.clone(),
        )?);
        let limits = server::Limits::new(config.kafka.max_connections);
        let (mut listeners, mut reports) = (Vec::new(), Vec::new());
        for (keyed, addr, socket) in bound {
            let listener = Arc::new(listener(&keyed, addr)?);
            peers.add_own_address(&listener.advertised_host, listener.advertised_port);
            reports.push(report(&listener, addr));
            listeners.push((listener.name.clone(), addr));
            tasks.push(tokio::spawn(server::serve(
                socket,
                context.clone(),
                listener,
                limits.clone(),
                stopped.clone(),
            )));
        }
        let advertised = crate::cluster::Advertised {
            // Clients reach this node at its first listener, other nodes at the one
            // `[cluster.peer]` names.
            kafka: reports[0].advertised.clone(),
            peer: (config.cluster.as_ref())
                .and_then(|c| c.peer.listener.as_ref())
                .and_then(|name| reports.iter().find(|r| r.name == *name))
                .map(|r| r.advertised.clone()),
        };
        let status = Arc::new(Status::new(kafka_addr.to_string(), reports));
        if let (Some(cluster), Some(settings)) = (&cluster, &config.cluster) {
            tracing::info!(cluster = %settings.name, node_id = config.node_id, ?advertised, "cluster node");
            let run = crate::cluster::run(
                cluster.clone(),
                settings.clone(),
                settings.peer_client()?,
                advertised,
                store.clone(),
                status.clone(),
                stopped.clone(),
            );
            tasks.push(tokio::spawn(run));
        }
        if let Some(cluster) = cluster.clone() {
            status.add_check(Box::new(move || cluster.not_ready()));
        }
        let pauses = Arc::new(Pauses::open(&config.data_dir)?);
        let mut links = Vec::new();
        for (i, mut link) in config.links().into_iter().enumerate() {
            link.tls = config.link_tls(i)?;
            link.sasl = config.link_sasl(i)?;
            tracing::info!(link = %link.config.name, bootstrap = ?link.config.bootstrap, "link starting");
            links.push(link.clone());
            let link_status = status.add_link(&link.config.name, &link.config.bootstrap);
            let mut runner = LinkRunner::new(
                link,
                store.clone(),
                link_status,
                groups.clone(),
                pauses.clone(),
            )
            .with_peers(peers.clone());
            if let Some(cluster) = &cluster {
                runner = runner.with_cluster(cluster.clone());
            }
            tasks.push(tokio::spawn(runner.run(stopped.clone())));
        }
        crate::metrics::declare_checks();
        let scrub = Arc::new(Scrub::default());
        tasks.push(tokio::spawn(crate::scrub::run(
            store.clone(),
            scrub.clone(),
            config.storage.scrub_bytes_per_second,
            stopped.clone(),
        )));
        let admin_addr = match &config.admin {
            Some(admin) => {
                let (listener, addr) =
                    admin::bind(&admin.listen)
                        .await
                        .map_err(|source| StartError::Listen {
                            addr: admin.listen.clone(),
                            source,
                        })?;
                let state = admin::AdminState {
                    status: status.clone(),
                    store: store.clone(),
                    token: config.admin_token()?,
                    pauses,
                    links: Arc::new(links),
                    scrub,
                    cluster: cluster.clone(),
                };
                tasks.push(tokio::spawn(admin::serve(listener, state, stopped.clone())));
                Some(addr)
            }
            None => None,
        };
        tasks.push(tokio::spawn(crate::retention::run(
            store.clone(),
            config.storage.retention_interval,
            stopped.clone(),
        )));
        tasks.push(tokio::spawn(crate::cleaner::run(
            store.clone(),
            config.storage.cleaner_interval,
            config.storage.cleaner_bytes_per_second,
            stopped.clone(),
        )));
        tasks.push(tokio::spawn(crate::groups::expiry::run(
            groups,
            config.groups.retention_check_interval,
            stopped.clone(),
        )));
        tasks.push(tokio::spawn(flush_loop(store.clone(), stopped)));
        Ok(Daemon {
            store,
            kafka_addr,
            listeners,
            admin_addr,
            status,
            stop,
            tasks,
        })
    }

    /// Stops fetching, waits for the link tasks, and flushes every log to disk.
    pub async fn shutdown(self) -> Result<(), StorageError> {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || flush_all(&store))
            .await
            .unwrap_or(Ok(()))
    }
}

fn task_failed(action: &'static str, config: &Config) -> impl FnOnce(JoinError) -> StartError {
    let path = config.data_dir.clone();
    move |source| StartError::Task {
        action,
        path,
        source,
    }
}

async fn create_owned_topics(config: &Config, store: &Arc<Store>) -> Result<(), StartError> {
    for (i, t) in config.topics.iter().enumerate() {
        let (s, name, partitions) = (store.clone(), t.name.clone(), t.partitions);
        let created = tokio::task::spawn_blocking(move || s.ensure_owned_topic(&name, partitions))
            .await
            .map_err(task_failed("create owned topics in", config))?;
        match created {
            // Reported as offline; the node serves everything else.
            Ok(_) | Err(OwnTopicError::Offline { .. }) => {}
            Err(e) => {
                return Err(ConfigError::Invalid {
                    key: format!("topics[{i}].name"),
                    reason: e.to_string(),
                }
                .into())
            }
        }
    }
    Ok(())
}

/// Binds every Kafka listener before any is served, so a port already taken stops the
/// node at start instead of leaving it half reachable.
async fn bind_listeners(
    config: &Config,
) -> Result<Vec<(KeyedListener, SocketAddr, tokio::net::TcpListener)>, StartError> {
    let mut bound = Vec::new();
    for keyed in config.listeners() {
        let listen = &keyed.config.listen;
        let (socket, addr) = server::bind(listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: listen.clone(),
                source,
            })?;
        bound.push((keyed, addr, socket));
    }
    Ok(bound)
}

/// The served form of a listener bound at `bound`, its TLS and SASL loaded.
fn listener(keyed: &KeyedListener, bound: SocketAddr) -> Result<server::Listener, ConfigError> {
    // With no explicit advertised address, clients are told the address actually bound,
    // which differs from `listen` when that asks for port 0.
    let advertised = match &keyed.config.advertised {
        Some(a) => a.clone(),
        None => bound.to_string(),
    };
    let (host, port) = server::split_host_port(&advertised)
        .unwrap_or_else(|| (bound.ip().to_string(), i32::from(bound.port())));
    let sasl = keyed.sasl()?.map(Arc::new);
    if let Some(sasl) = &sasl {
        crate::metrics::declare_sasl(&sasl.mechanisms);
    }
    let listener = server::Listener {
        name: keyed.config.name.clone(),
        protocol: keyed.protocol(),
        advertised_host: host,
        advertised_port: port,
        tls: keyed.tls()?,
        sasl,
    };
    tracing::info!(
        listener = %listener.name,
        protocol = %listener.protocol,
        %bound,
        %advertised,
        "Kafka listener ready"
    );
    Ok(listener)
}

fn report(listener: &server::Listener, bound: SocketAddr) -> ListenerReport {
    let (host, port) = (&listener.advertised_host, listener.advertised_port);
    let advertised = match host.contains(':') {
        true => format!("[{host}]:{port}"),
        false => format!("{host}:{port}"),
    };
    ListenerReport {
        name: listener.name.clone(),
        protocol: listener.protocol.to_string(),
        address: bound.to_string(),
        advertised,
    }
}

/// The node's view of its peers, with the epochs of the topics it owns now remembered.
async fn open_peers(config: &Config, store: &Arc<Store>) -> Result<Arc<Peers>, StartError> {
    let (node_id, path) = (config.node_id, config.data_dir.join("owned-epochs.json"));
    let store = store.clone();
    let peers = tokio::task::spawn_blocking(move || {
        let peers = Peers::open(node_id, Some(path))?;
        for topic in store.topics() {
            peers.remember_owned(&topic);
        }
        Ok::<_, StorageError>(peers)
    })
    .await
    .map_err(task_failed("open the peers of", config))??;
    Ok(Arc::new(peers))
}

fn server_context(
    config: &Config,
    store: Arc<Store>,
    (groups, txns): (Arc<Coordinator>, Arc<TxnCoordinator>),
    peers: Arc<Peers>,
    cluster: Option<Arc<Cluster>>,
) -> Result<ServerContext, ConfigError> {
    Ok(ServerContext {
        store,
        groups,
        txns,
        // Clients refuse to mix brokers of different clusters: a cluster's nodes share one id.
        cluster_id: match &config.cluster {
            Some(c) => format!("shadowlink-{}", c.name),
            None => format!("shadowlink-{}", config.data_dir.display()),
        },
        node_id: config.node_id,
        max_frame_bytes: config.kafka.max_request_bytes,
        request_budget: server::RequestBudget::new(config.kafka.request_memory_bytes),
        idle_timeout: config.kafka.idle_timeout,
        create_policy: server::CreatePolicy {
            links: config
                .links()
                .into_iter()
                .map(|l| (l.config.name, l.filter))
                .collect(),
            max_partitions_per_request: config.kafka.max_partitions_per_request,
            max_partitions: config.storage.max_partitions,
        },
        sessions: server::SessionCache::new(config.kafka.fetch_session_slots),
        acl: crate::authz::Acl::new(&config.acls)?,
        peers,
        cluster,
    })
}

/// Threads that sync the logs on a clean stop: a stop with many partitions waits on a
/// few fsyncs each, and several threads keep more of them in flight.
const STOP_THREADS: usize = 8;

/// Syncs every log. A log that fails to sync does not stop the others; the first failure
/// is returned.
fn flush_all(store: &Store) -> Result<(), StorageError> {
    let partitions: Vec<_> = (store.topics().iter())
        .flat_map(|t| t.partitions())
        .collect();
    let next = AtomicUsize::new(0);
    let worker = || {
        let mut first = Ok(());
        while let Some(p) = partitions.get(next.fetch_add(1, Ordering::Relaxed)) {
            if let Err(e) = p.flush() {
                tracing::error!(topic = %p.topic, partition = p.partition, error = %e, "cannot sync on stop");
                first = first.and(Err(e));
            }
        }
        first
    };
    std::thread::scope(|scope| {
        let threads = STOP_THREADS.min(partitions.len());
        let workers: Vec<_> = (0..threads).map(|_| scope.spawn(worker)).collect();
        (workers.into_iter())
            .map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .fold(Ok(()), Result::and)
    })
}

/// Gives interval persistence its bound even when no further append arrives. Only the
/// partitions written since their last sync are queued, so idle partitions cost nothing.
async fn flush_loop(store: Arc<Store>, mut stopped: watch::Receiver<bool>) {
    let queue = store.flushes();
    loop {
        let (due, next) = queue.take_due(std::time::Instant::now());
        if !due.is_empty() {
            let store = store.clone();
            let _ = tokio::task::spawn_blocking(move || flush_partitions(&store, due)).await;
            continue;
        }
        let next_due = async {
            match next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stopped.changed() => return,
            _ = queue.changed() => {}
            _ = next_due => {}
        }
    }
}

fn flush_partitions(store: &Store, due: Vec<TopicPartition>) {
    for tp in due {
        let Some(partition) = store.partition(&tp.topic, tp.partition) else {
            continue;
        };
        match partition.flush_if_due() {
            // A failed write was reported by its writer, which reopens the log once the
            // disk takes writes again.
            Ok(()) | Err(StorageError::Poisoned) => {}
            Err(e) => partition.fail(format!("flush failed: {e}")),
        }
    }
}
