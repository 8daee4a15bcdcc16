//! Node configs built from typed parts and rendered to the TOML `shadowlink` reads.
//!
//! A test states the settings it depends on; nothing is patched into shared text, so a
//! change to a common config cannot quietly make a test check a different one.

use std::fmt::Display;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// The config of one node: `[kafka]`, `[[kafka.listeners]]`, `[admin]`, `[storage]`,
/// `[groups]`, `[[topics]]`, `[[links]]`, `[[acls]]`.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    node_id: Option<i32>,
    kafka: Table,
    listeners: Vec<Listener>,
    admin: Option<Table>,
    storage: Table,
    groups: Table,
    topics: Vec<(String, i32)>,
    links: Vec<Link>,
    acls: Vec<Table>,
    cluster: Option<Table>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig::new()
    }
}

impl NodeConfig {
    /// A Kafka listener on a free loopback port and nothing else: every other setting
    /// is the daemon's default.
    pub fn new() -> NodeConfig {
        NodeConfig {
            node_id: None,
            kafka: Table::default().with("listen", quoted("127.0.0.1:0")),
            listeners: Vec::new(),
            admin: None,
            storage: Table::default(),
            groups: Table::default(),
            topics: Vec::new(),
            links: Vec::new(),
            acls: Vec::new(),
            cluster: None,
        }
    }

    /// A node that owns its topics and has no link; `persist = "always"` makes every
    /// acknowledged batch survive kill -9.
    pub fn owner() -> NodeConfig {
        NodeConfig::new().persist("always")
    }

    /// A node with one link `from-a` from `source` taking `a_*` but `a_scratch`, refreshing
    /// metadata every 300 ms and topic configs every second, with `persist = "os"`.
    pub fn linked_to(source: SocketAddr) -> NodeConfig {
        let link = Link::new("from-a", source)
            .include(&["a_*"])
            .exclude(&["a_scratch"])
            .metadata_interval(Duration::from_millis(300))
            .config_interval(Duration::from_secs(1));
        NodeConfig::new().persist("os").add_link(link)
    }

    /// `node_id`: the broker id Metadata and FindCoordinator give the node.
    pub fn node_id(mut self, id: i32) -> Self {
        self.node_id = Some(id);
        self
    }

    /// `kafka.listen`.
    pub fn listen(mut self, addr: impl Display) -> Self {
        self.kafka.set("listen", quoted(addr));
        self
    }

    /// `kafka.advertised`: the address Metadata gives clients, a proxy in front, say.
    pub fn advertised(mut self, addr: impl Display) -> Self {
        self.kafka.set("advertised", quoted(addr));
        self
    }

    /// `kafka.max_connections`.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.kafka.set("max_connections", n.to_string());
        self
    }

    /// `kafka.idle_timeout`.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.kafka.set("idle_timeout", duration(timeout));
        self
    }

    /// `kafka.max_request_bytes`: the largest request frame accepted.
    pub fn max_request_bytes(mut self, bytes: usize) -> Self {
        self.kafka.set("max_request_bytes", bytes.to_string());
        self
    }

    /// `kafka.request_memory_bytes`: the node-wide budget for request buffers.
    pub fn request_memory_bytes(mut self, bytes: usize) -> Self {
        self.kafka.set("request_memory_bytes", bytes.to_string());
        self
    }

    /// `kafka.max_partitions_per_request`.
    pub fn max_partitions_per_request(mut self, n: i64) -> Self {
        self.kafka.set("max_partitions_per_request", n.to_string());
        self
    }

    /// `kafka.fetch_session_slots`: KIP-227 sessions the listener holds at once.
    pub fn fetch_session_slots(mut self, n: usize) -> Self {
        self.kafka.set("fetch_session_slots", n.to_string());
        self
    }

    /// An admin listener on a free loopback port.
    pub fn admin(self) -> Self {
        self.admin_listen("127.0.0.1:0")
    }

    /// An admin listener on `addr`, which need not be valid.
    pub fn admin_listen(mut self, addr: impl Display) -> Self {
        self.admin = Some(Table::default().with("listen", quoted(addr)));
        self
    }

    /// `admin.token_file`: the admin API needs the bearer token this file holds.
    ///
    /// # Panics
    /// When the config has no admin listener: the test is wrong, not the node.
    pub fn admin_token_file(mut self, path: &Path) -> Self {
        let admin = self.admin.as_mut().expect("an admin listener to protect");
        admin.set("token_file", quoted(path.display()));
        self
    }

    /// `storage.persist`, which need not be a mode the daemon knows.
    pub fn persist(mut self, mode: &str) -> Self {
        self.storage.set("persist", quoted(mode));
        self
    }

    /// `storage.segment_bytes`.
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.storage.set("segment_bytes", bytes.to_string());
        self
    }

    /// `storage.retention_interval`.
    pub fn retention_interval(mut self, interval: Duration) -> Self {
        self.storage.set("retention_interval", duration(interval));
        self
    }

    /// `storage.max_partitions`.
    pub fn max_partitions(mut self, n: i64) -> Self {
        self.storage.set("max_partitions", n.to_string());
        self
    }

    /// `storage.fault_fsync_delay`: every fsync sleeps this long first.
    pub fn fault_fsync_delay(mut self, delay: Duration) -> Self {
        self.storage.set("fault_fsync_delay", duration(delay));
        self
    }

    /// `storage.fault_fsync_fail_after`: in each partition log, the fsyncs after this
    /// many successful ones fail.
    pub fn fault_fsync_fail_after(mut self, n: u64) -> Self {
        self.storage.set("fault_fsync_fail_after", n.to_string());
        self
    }

    /// `kafka.tls`: a TLS-only listener with this PEM certificate and key; with `ca`,
    /// client certificates are verified against it, and required when
    /// `require_client_cert`.
    pub fn kafka_tls(
        mut self,
        cert: &Path,
        key: &Path,
        ca: Option<&Path>,
        require_client_cert: bool,
    ) -> Self {
        let tls = tls_table(cert, key, ca, require_client_cert);
        self.kafka.set("tls", tls);
        self
    }

    /// `groups.offsets_retention`: how long a group without members keeps offsets
    /// that do not change.
    pub fn offsets_retention(mut self, retention: Duration) -> Self {
        self.groups.set("offsets_retention", duration(retention));
        self
    }

    /// `groups.retention_check_interval`.
    pub fn group_retention_check_interval(mut self, interval: Duration) -> Self {
        self.groups
            .set("retention_check_interval", duration(interval));
        self
    }

    /// `kafka.sasl`: clients authenticate with one of `mechanisms` as a user of the
    /// users file at `users_file`, a failure answered after `failed_delay`;
    /// `allow_plaintext` permits SASL without TLS.
    pub fn kafka_sasl(
        mut self,
        mechanisms: &[&str],
        users_file: &Path,
        failed_delay: Duration,
        allow_plaintext: bool,
    ) -> Self {
        let sasl = sasl_table(mechanisms, users_file, failed_delay, allow_plaintext);
        self.kafka.set("sasl", sasl);
        self
    }

    /// A `[storage]` key with a TOML value as written, for values the daemon must refuse.
    pub fn storage_entry(mut self, key: &str, toml: &str) -> Self {
        self.storage.set(key, toml.to_string());
        self
    }

    /// A `[[topics]]` entry: a topic this node owns.
    pub fn topic(mut self, name: &str, partitions: i32) -> Self {
        self.topics.push((name.to_string(), partitions));
        self
    }

    /// An `[[acls]]` rule granting `principal` the `operations` on `topics`, `groups`
    /// and, with `cluster`, the cluster.
    pub fn acl(
        mut self,
        principal: &str,
        operations: &[&str],
        topics: &[&str],
        groups: &[&str],
        cluster: bool,
    ) -> Self {
        let rule = Table::default()
            .with("principal", quoted(principal))
            .with("operations", list(operations))
            .with("topics", list(topics))
            .with("groups", list(groups))
            .with("cluster", cluster.to_string());
        self.acls.push(rule);
        self
    }

    /// `kafka.name`: the name of the `[kafka]` listener.
    pub fn listener_name(mut self, name: &str) -> Self {
        self.kafka.set("name", quoted(name));
        self
    }

    /// Another `[[kafka.listeners]]` entry.
    pub fn add_listener(mut self, listener: Listener) -> Self {
        self.listeners.push(listener);
        self
    }

    /// Another `[[links]]` entry.
    pub fn add_link(mut self, link: Link) -> Self {
        self.links.push(link);
        self
    }

    /// Changes the last link added.
    ///
    /// # Panics
    /// When the config has no link: the test is wrong, not the node.
    pub fn link(mut self, change: impl FnOnce(Link) -> Link) -> Self {
        let link = self.links.pop().expect("the config has a link to change");
        self.links.push(change(link));
        self
    }

    /// `[cluster]`: one node of cluster `name` coordinated by etcd at `endpoint`, with
    /// the given lease TTL and replication factor.
    pub fn cluster(mut self, name: &str, endpoint: &str, lease_ttl: &str, rf: usize) -> Self {
        let table = Table::default()
            .with("name", quoted(name))
            .with("endpoints", list(&[endpoint]))
            .with("lease_ttl", quoted(lease_ttl))
            .with("replication_factor", rf.to_string());
        self.cluster = Some(table);
        self
    }

    /// A `[cluster]` key with a TOML value as written; after [`cluster`](Self::cluster).
    pub fn cluster_entry(mut self, key: &str, toml: &str) -> Self {
        if let Some(table) = &mut self.cluster {
            table.set(key, toml.to_string());
        }
        self
    }

    /// Whether the node will open an admin listener.
    pub fn has_admin(&self) -> bool {
        self.admin.is_some()
    }

    /// The TOML text, with `data_dir` set when given (leaving it out is a config error).
    pub fn render(&self, data_dir: Option<&Path>) -> String {
        let mut out = String::new();
        if let Some(dir) = data_dir {
            out.push_str(&format!("data_dir = {}\n", quoted(dir.display())));
        }
        if let Some(id) = self.node_id {
            out.push_str(&format!("node_id = {id}\n"));
        }
        self.kafka.render("[kafka]", &mut out);
        for listener in &self.listeners {
            listener.0.render("[[kafka.listeners]]", &mut out);
        }
        if let Some(admin) = &self.admin {
            admin.render("[admin]", &mut out);
        }
        if !self.storage.0.is_empty() {
            self.storage.render("[storage]", &mut out);
        }
        if !self.groups.0.is_empty() {
            self.groups.render("[groups]", &mut out);
        }
        for (name, partitions) in &self.topics {
            Table::default()
                .with("name", quoted(name))
                .with("partitions", partitions.to_string())
                .render("[[topics]]", &mut out);
        }
        for link in &self.links {
            link.0.render("[[links]]", &mut out);
        }
        for rule in &self.acls {
            rule.render("[[acls]]", &mut out);
        }
        if let Some(cluster) = &self.cluster {
            cluster.render("[cluster]", &mut out);
        }
        out
    }
}

/// One `[[kafka.listeners]]` entry: a further Kafka listener of the node.
#[derive(Clone, Debug)]
pub struct Listener(Table);

impl Listener {
    /// A PLAINTEXT listener named `name` on a free loopback port.
    pub fn new(name: &str) -> Listener {
        let table = Table::default()
            .with("name", quoted(name))
            .with("listen", quoted("127.0.0.1:0"));
        Listener(table)
    }

    /// `advertised`: the address Metadata gives this listener's clients.
    pub fn advertised(self, addr: impl Display) -> Self {
        Listener(self.0.with("advertised", quoted(addr)))
    }

    /// `tls`, as [`NodeConfig::kafka_tls`] sets it for `[kafka]`.
    pub fn tls(
        self,
        cert: &Path,
        key: &Path,
        ca: Option<&Path>,
        require_client_cert: bool,
    ) -> Self {
        let tls = tls_table(cert, key, ca, require_client_cert);
        Listener(self.0.with("tls", tls))
    }

    /// `sasl`, as [`NodeConfig::kafka_sasl`] sets it for `[kafka]`.
    pub fn sasl(
        self,
        mechanisms: &[&str],
        users_file: &Path,
        failed_delay: Duration,
        allow_plaintext: bool,
    ) -> Self {
        let sasl = sasl_table(mechanisms, users_file, failed_delay, allow_plaintext);
        Listener(self.0.with("sasl", sasl))
    }
}

/// A listener's `tls` as an inline table.
fn tls_table(cert: &Path, key: &Path, ca: Option<&Path>, require_client_cert: bool) -> String {
    let mut tls = Table::default()
        .with("cert", quoted(cert.display()))
        .with("key", quoted(key.display()))
        .with("require_client_cert", require_client_cert.to_string());
    if let Some(ca) = ca {
        tls.set("ca", quoted(ca.display()));
    }
    tls.inline()
}

/// A listener's `sasl` as an inline table.
fn sasl_table(
    mechanisms: &[&str],
    users_file: &Path,
    failed_delay: Duration,
    allow_plaintext: bool,
) -> String {
    Table::default()
        .with("mechanisms", list(mechanisms))
        .with("users_file", quoted(users_file.display()))
        .with("failed_authentication_delay", duration(failed_delay))
        .with("allow_plaintext", allow_plaintext.to_string())
        .inline()
}

/// One `[[links]]` entry.
#[derive(Clone, Debug)]
pub struct Link(Table);

impl Link {
    /// A link named `name` to the broker at `bootstrap`, including nothing yet.
    pub fn new(name: &str, bootstrap: impl Display) -> Link {
        Link(
            Table::default()
                .with("name", quoted(name))
                .with("bootstrap", list(&[bootstrap.to_string()])),
        )
    }

    pub fn include(self, patterns: &[&str]) -> Self {
        self.with("include", list(patterns))
    }

    pub fn exclude(self, patterns: &[&str]) -> Self {
        self.with("exclude", list(patterns))
    }

    /// Where a new partition begins: `earliest` or `latest`.
    pub fn start(self, position: &str) -> Self {
        self.with("start", quoted(position))
    }

    pub fn metadata_interval(self, interval: Duration) -> Self {
        self.with("metadata_interval", duration(interval))
    }

    pub fn config_interval(self, interval: Duration) -> Self {
        self.with("config_interval", duration(interval))
    }

    /// Consumer groups whose offsets are synced.
    pub fn groups(self, patterns: &[&str]) -> Self {
        self.with("groups", list(patterns))
    }

    pub fn group_interval(self, interval: Duration) -> Self {
        self.with("group_interval", duration(interval))
    }

    pub fn mirror_schemas(self, on: bool) -> Self {
        self.with("mirror_schemas", on.to_string())
    }

    pub fn fetch_max_bytes(self, bytes: i32) -> Self {
        self.with("fetch_max_bytes", bytes.to_string())
    }

    pub fn partition_max_bytes(self, bytes: i32) -> Self {
        self.with("partition_max_bytes", bytes.to_string())
    }

    pub fn fetches_in_flight(self, n: usize) -> Self {
        self.with("fetches_in_flight", n.to_string())
    }

    pub fn request_timeout(self, timeout: Duration) -> Self {
        self.with("request_timeout", duration(timeout))
    }

    pub fn progress_interval(self, interval: Duration) -> Self {
        self.with("progress_interval", duration(interval))
    }

    /// `fetch_min_bytes`: Kafka's `fetch.min.bytes` for the link's long polls.
    pub fn fetch_min_bytes(self, bytes: i32) -> Self {
        self.with("fetch_min_bytes", bytes.to_string())
    }

    /// `fetch_max_wait`: Kafka's `fetch.max.wait.ms` for the link's long polls.
    pub fn fetch_max_wait(self, wait: Duration) -> Self {
        self.with("fetch_max_wait", duration(wait))
    }

    /// `fetch_sessions`: whether the link opens KIP-227 sessions with its source.
    pub fn fetch_sessions(self, on: bool) -> Self {
        self.with("fetch_sessions", on.to_string())
    }

    /// `tls`: connect to the source over TLS, trusting the PEM CA at `ca`, checking
    /// certificates for `server_name` instead of the broker's host when given.
    pub fn tls(self, ca: &Path, server_name: Option<&str>) -> Self {
        let mut tls = Table::default().with("ca", quoted(ca.display()));
        if let Some(name) = server_name {
            tls.set("server_name", quoted(name));
        }
        self.with("tls", tls.inline())
    }

    /// `sasl`: authenticate to the source as `username` with `mechanism`, the password
    /// read from `password`, a `password_file = "..."` or `password_env = "..."` entry
    /// as written; `allow_plaintext` permits it without `tls`.
    pub fn sasl(
        self,
        mechanism: &str,
        username: &str,
        password: &str,
        allow_plaintext: bool,
    ) -> Self {
        let sasl = format!(
            "{{ mechanism = {}, username = {}, {password}, allow_plaintext = {allow_plaintext} }}",
            quoted(mechanism),
            quoted(username)
        );
        self.with("sasl", sasl)
    }

    /// A key with a TOML value as written, for keys or values the daemon must refuse.
    pub fn entry(self, key: &str, toml: &str) -> Self {
        self.with(key, toml.to_string())
    }

    fn with(mut self, key: &str, value: String) -> Self {
        self.0.set(key, value);
        self
    }
}

/// Keys and rendered TOML values of one table, in the order first set.
#[derive(Clone, Debug, Default)]
struct Table(Vec<(String, String)>);

impl Table {
    fn set(&mut self, key: &str, value: String) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => self.0.push((key.to_string(), value)),
        }
    }

    fn with(mut self, key: &str, value: String) -> Self {
        self.set(key, value);
        self
    }

    /// The table as a TOML inline table, the value of a key in another table.
    fn inline(&self) -> String {
        let entries: Vec<String> = self.0.iter().map(|(k, v)| format!("{k} = {v}")).collect();
        format!("{{ {} }}", entries.join(", "))
    }

    fn render(&self, header: &str, out: &mut String) {
        out.push_str(header);
        out.push('\n');
        for (key, value) in &self.0 {
            out.push_str(&format!("{key} = {value}\n"));
        }
    }
}

/// A TOML basic string: JSON string escapes are valid TOML ones.
fn quoted(text: impl Display) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

fn list(items: &[impl AsRef<str>]) -> String {
    let items: Vec<String> = items.iter().map(|i| quoted(i.as_ref())).collect();
    format!("[{}]", items.join(", "))
}

/// A humantime duration, in milliseconds so that no precision the tests use is lost.
fn duration(d: Duration) -> String {
    quoted(format!("{}ms", d.as_millis()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_linked_node_renders_every_table() {
        let source: SocketAddr = "127.0.0.1:9092".parse().unwrap();
        let text = NodeConfig::linked_to(source)
            .admin()
            .segment_bytes(2048)
            .topic("b_owned", 2)
            .link(|l| l.start("latest").groups(&["bill*"]))
            .render(Some(Path::new("/data")));
        let expected = r#"data_dir = "/data"
[kafka]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[storage]
persist = "os"
segment_bytes = 2048
[[topics]]
name = "b_owned"
partitions = 2
[[links]]
name = "from-a"
bootstrap = ["127.0.0.1:9092"]
include = ["a_*"]
exclude = ["a_scratch"]
metadata_interval = "300ms"
config_interval = "1000ms"
start = "latest"
groups = ["bill*"]
"#;
        assert_eq!(text, expected);
    }

    #[test]
    fn extra_listeners_render_under_the_kafka_table() {
        let text = NodeConfig::new()
            .listener_name("internal")
            .add_listener(Listener::new("external").advertised("h:9093"))
            .admin()
            .render(None);
        let expected = r#"[kafka]
listen = "127.0.0.1:0"
name = "internal"
[[kafka.listeners]]
name = "external"
listen = "127.0.0.1:0"
advertised = "h:9093"
[admin]
listen = "127.0.0.1:0"
"#;
        assert_eq!(text, expected);
    }

    #[test]
    fn setting_a_key_again_replaces_it() {
        let text = NodeConfig::new()
            .persist("os")
            .persist("always")
            .render(None);
        assert_eq!(
            text,
            "[kafka]\nlisten = \"127.0.0.1:0\"\n[storage]\npersist = \"always\"\n"
        );
    }
}
