use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use shadowlink::config::Config;
use shadowlink::daemon::Daemon;

mod demo;

/// Offset-preserving Kafka shadow replication for reciprocal active-passive pairs.
#[derive(Parser)]
#[command(name = "shadowlink", version)]
struct Cli {
    /// Log format on stderr; filter with RUST_LOG (default "info").
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node: mirror every link's topics until SIGTERM or SIGINT.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Validate a config file without starting anything.
    CheckConfig {
        #[arg(long)]
        config: PathBuf,
    },
    /// Show a running node's links, topics and partitions (from its admin listener).
    Status {
        /// The node's admin listener, `http://host:port` or `host:port`.
        #[arg(long, default_value = shadowlink::admin::client::DEFAULT_ADMIN)]
        admin: String,
        #[arg(long, value_enum, default_value_t = StatusFormat::Text)]
        format: StatusFormat,
        #[command(flatten)]
        token: TokenArgs,
    },
    /// Two nodes in this process, each owning topics and shadowing the other's: produce,
    /// watch the lag, cut B off and stop region A, fail over to B, bring A back (fenced,
    /// failed back, then switched over), and account for every record.
    Demo {
        /// After setup, leave the pair up (idle, no demo producers) and print its
        /// addresses for your own clients; stop with Ctrl-C or SIGTERM.
        #[arg(long)]
        keep_running: bool,
        /// Region B as a cluster of this many nodes coordinated by etcd (3 or more; needs
        /// a build with `--features cluster` and etcd installed): region A writes, B's
        /// consumer reads through one node while a node is killed with SIGKILL; prints how
        /// long leadership took to move and checks every record and the replacement replica.
        #[arg(long, default_value_t = 1)]
        nodes: usize,
    },
    /// Manage the users file of the Kafka listener's SASL (`kafka.sasl.users_file`).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Make a link's shadow topics writable on the node, one way, without contacting the
    /// source; prints per partition the records known at risk, the blind window before the
    /// failover and the upper estimate of records lost, then the totals. On a cluster node,
    /// also each partition's leader, epoch and replicas.
    Failover {
        /// The node's admin listener, `http://host:port` or `host:port`.
        #[arg(long, default_value = shadowlink::admin::client::DEFAULT_ADMIN)]
        admin: String,
        #[arg(long)]
        link: String,
        #[command(flatten)]
        topics: FailoverTopics,
        #[command(flatten)]
        token: TokenArgs,
    },
    /// Move topics, with no loss and unchanged offsets, from the node that owns them to
    /// the node that mirrors them: stops writes on the owner (producers get a retriable
    /// error), waits for the mirror to hold the same log end and tail, makes it the owner
    /// in a newer epoch, and demotes the old owner's copy to a shadow. Running it again
    /// resumes an interrupted switchover.
    Switchover {
        /// The owner's admin listener.
        #[arg(long)]
        from: String,
        /// The owner's link to the new owner (its copy becomes a shadow of it).
        #[arg(long)]
        from_link: String,
        /// The owner's admin token file.
        #[arg(long)]
        from_token_file: Option<PathBuf>,
        /// The new owner's admin listener.
        #[arg(long)]
        to: String,
        /// The new owner's link to the owner, which mirrors the topics now.
        #[arg(long)]
        to_link: String,
        /// The new owner's admin token file.
        #[arg(long)]
        to_token_file: Option<PathBuf>,
        /// A topic to move; repeat for several.
        #[arg(long = "topic", required = true)]
        topics: Vec<String>,
        /// How long the new owner may take to catch up once writes stopped.
        #[arg(long, default_value = "8s", value_parser = humantime::parse_duration)]
        catch_up: std::time::Duration,
        /// How long an unanswered node is retried (a node restarting after a crash).
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// On a node that owned topics and came back after its peer failed them over: save
    /// every record written here past the failover point to a file under the data dir,
    /// cut it, and make the topics read-only shadows of the link so they follow the peer.
    Failback {
        /// The node's admin listener, `http://host:port` or `host:port`.
        #[arg(long, default_value = shadowlink::admin::client::DEFAULT_ADMIN)]
        admin: String,
        /// The link to the peer that owns the topics now.
        #[arg(long)]
        link: String,
        /// A topic to fail back; repeat for several. Without it, every topic the link
        /// fenced.
        #[arg(long = "topic")]
        topics: Vec<String>,
        #[command(flatten)]
        token: TokenArgs,
    },
    /// Stop fetching a link, or some of its topics: the mirror stays as it is and its lag
    /// keeps being reported. Kept across restarts until resumed.
    Pause {
        #[command(flatten)]
        target: LinkTopics,
    },
    /// Fetch a paused link or topics again, from where they stopped.
    Resume {
        #[command(flatten)]
        target: LinkTopics,
    },
    /// Compare a link's mirror with its source, batch by batch (base offset, length, CRC,
    /// bytes), over the link's own connection; exits non-zero when anything differs.
    Verify {
        #[command(flatten)]
        target: LinkTopics,
        /// Only this partition of each topic.
        #[arg(long)]
        partition: Option<i32>,
        #[arg(long, value_enum, default_value_t = StatusFormat::Text)]
        format: StatusFormat,
    },
}

/// A link of a running node, and optionally some of its topics.
#[derive(clap::Args)]
struct LinkTopics {
    /// The node's admin listener, `http://host:port` or `host:port`.
    #[arg(long, default_value = shadowlink::admin::client::DEFAULT_ADMIN)]
    admin: String,
    #[arg(long)]
    link: String,
    /// A topic of the link; repeat for several. Without it, the whole link.
    #[arg(long = "topic")]
    topics: Vec<String>,
    #[command(flatten)]
    token: TokenArgs,
}

/// The admin API's bearer token, for a node with `[admin] token_file` or `token_env`.
#[derive(clap::Args)]
struct TokenArgs {
    /// A file holding the admin token; without it the SHADOWLINK_ADMIN_TOKEN environment
    /// variable is used when set.
    #[arg(long)]
    token_file: Option<PathBuf>,
}

impl TokenArgs {
    fn load(&self) -> anyhow::Result<Option<shadowlink::admin::auth::AdminToken>> {
        Ok(shadowlink::admin::client::token(
            self.token_file.as_deref(),
        )?)
    }
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user, or replace its credentials, storing only SCRAM salted hashes. The
    /// password is read from standard input (one line) or from `--password-env`, never
    /// from the command line. A running node reads the file at start.
    Add {
        /// The users file; created when missing, other users kept.
        #[arg(long)]
        file: PathBuf,
        #[arg(long)]
        user: String,
        /// SCRAM-SHA-256 or SCRAM-SHA-512; repeat for both (the default). PLAIN logins
        /// are checked against these credentials.
        #[arg(long = "mechanism")]
        mechanisms: Vec<String>,
        /// PBKDF2 iterations (at least 4096, Kafka's minimum).
        #[arg(long, default_value_t = shadowlink::sasl::scram::MIN_ITERATIONS)]
        iterations: u32,
        /// Read the password from this environment variable instead of standard input.
        #[arg(long)]
        password_env: Option<String>,
    },
}

#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct FailoverTopics {
    /// Every shadow topic of the link.
    #[arg(long)]
    all: bool,
    /// A shadow topic to fail over; repeat for several.
    #[arg(long = "topic")]
    topics: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum StatusFormat {
    Text,
    Json,
}

fn init_tracing(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo prints its own story on stdout; only warnings go to stderr unless asked.
    let default_filter = match cli.command {
        Command::Demo { .. } => "warn",
        _ => "info",
    };
    init_tracing(cli.log_format, default_filter);
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shadowlink: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::CheckConfig { config } => {
            let c = Config::load(&config)?;
            println!(
                "{}: ok ({} link(s), data_dir {})",
                config.display(),
                c.links.len(),
                c.data_dir.display()
            );
            Ok(())
        }
        Command::Status {
            admin,
            format,
            token,
        } => status(&admin, format, token.load()?.as_ref()),
        Command::Failover {
            admin,
            link,
            topics,
            token,
        } => {
            let request = shadowlink::failover::FailoverRequest {
                all: topics.all,
                topics: topics.topics,
            };
            let token = token.load()?;
            let answer =
                shadowlink::admin::failover::request(&admin, token.as_ref(), &link, &request)?;
            print!("{}", shadowlink::admin::failover::render_answer(&answer));
            Ok(())
        }
        Command::Pause { target } => pause(target, true),
        Command::Resume { target } => pause(target, false),
        Command::Verify {
            target,
            partition,
            format,
        } => verify(target, partition, format),
        Command::Switchover {
            from,
            from_link,
            from_token_file,
            to,
            to_link,
            to_token_file,
            topics,
            catch_up,
            timeout,
        } => {
            use shadowlink::admin::{client, switchover};
            let from_token = client::token(from_token_file.as_deref())?;
            let to_token = client::token(to_token_file.as_deref())?;
            let from = switchover::Side {
                admin: &from,
                token: from_token.as_ref(),
                link: &from_link,
            };
            let to = switchover::Side {
                admin: &to,
                token: to_token.as_ref(),
                link: &to_link,
            };
            let outcome = switchover::run(&from, &to, &topics, catch_up, timeout)?;
            print!("{}", switchover::render(&outcome));
            Ok(())
        }
        Command::Failback {
            admin,
            link,
            topics,
            token,
        } => {
            let request = shadowlink::failback::FailbackRequest { topics };
            let token = token.load()?;
            let outcomes =
                shadowlink::admin::failback::request(&admin, token.as_ref(), &link, &request)?;
            print!("{}", shadowlink::admin::failback::render(&link, &outcomes));
            Ok(())
        }
        Command::Demo {
            keep_running,
            nodes: 1,
        } => demo::run(keep_running),
        Command::Demo {
            keep_running,
            nodes,
        } => demo::run_cluster(nodes, keep_running),
        Command::User { command } => user(command),
        Command::Run { config } => {
            let config = Config::load(&config)?;
            let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
            runtime.block_on(serve(config))
        }
    }
}

fn user(command: UserCommand) -> anyhow::Result<()> {
    use shadowlink::sasl::{scram, Mechanism, Users};
    let UserCommand::Add {
        file,
        user,
        mechanisms,
        iterations,
        password_env,
    } = command;
    anyhow::ensure!(!user.is_empty(), "--user must not be empty");
    anyhow::ensure!(
        (scram::MIN_ITERATIONS..=scram::MAX_ITERATIONS).contains(&iterations),
        "--iterations must be between {} and {}",
        scram::MIN_ITERATIONS,
        scram::MAX_ITERATIONS
    );
    let mut hashes = Vec::new();
    for name in &mechanisms {
        let mechanism: Mechanism = name.parse().map_err(anyhow::Error::msg)?;
        let hash = mechanism.scram().with_context(|| {
            format!("{name} logins are checked against the SCRAM credentials: add SCRAM-SHA-256 or SCRAM-SHA-512")
        })?;
        hashes.push(hash);
    }
    if hashes.is_empty() {
        hashes = vec![scram::ScramHash::Sha256, scram::ScramHash::Sha512];
    }
    let password = match password_env {
        Some(var) => std::env::var_os(&var)
            .with_context(|| format!("${var} is not set"))?
            .into_encoded_bytes(),
        None => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("cannot read the password from standard input")?;
            line.trim_end_matches(['\n', '\r']).as_bytes().to_vec()
        }
    };
    anyhow::ensure!(!password.is_empty(), "the password is empty");
    Users::add_to_file(&file, &user, &password, &hashes, iterations)?;
    println!("{}: user {user:?} added", file.display());
    Ok(())
}

fn status(
    admin: &str,
    format: StatusFormat,
    token: Option<&shadowlink::admin::auth::AdminToken>,
) -> anyhow::Result<()> {
    use shadowlink::admin::{client, table};
    let json = client::fetch_json(admin, token)?;
    let report = client::parse(admin, &json)?;
    match format {
        StatusFormat::Text => print!("{}", table::render(&report)),
        StatusFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(())
}

fn pause(target: LinkTopics, pause: bool) -> anyhow::Result<()> {
    use shadowlink::admin::pause::{render, request};
    let token = target.token.load()?;
    let answer = request(
        &target.admin,
        token.as_ref(),
        &target.link,
        target.topics,
        pause,
    )?;
    print!("{}", render(&answer));
    Ok(())
}

fn verify(target: LinkTopics, partition: Option<i32>, format: StatusFormat) -> anyhow::Result<()> {
    use shadowlink::admin::verify::{render, request};
    let token = target.token.load()?;
    let asked = shadowlink::verify::VerifyRequest {
        topics: target.topics,
        partition,
    };
    let report = request(&target.admin, token.as_ref(), &target.link, &asked)?;
    match format {
        StatusFormat::Text => print!("{}", render(&report)),
        StatusFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    let (differ, failed) = (report.mismatched(), report.failed());
    anyhow::ensure!(
        differ == 0 && failed == 0,
        "{differ} partition(s) differ from the source, {failed} could not be verified"
    );
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let daemon = Daemon::start(config).await?;
    // One machine-readable line, so scripts and tests learn the ports actually bound.
    println!("shadowlink kafka={}", daemon.kafka_addr);
    if let Some(admin) = daemon.admin_addr {
        println!("shadowlink admin={admin}");
    }
    for (name, addr) in daemon.listeners.iter().skip(1) {
        println!("shadowlink listener {name}={addr}");
    }
    wait_for_signal().await?;
    tracing::info!("shutting down");
    daemon.shutdown().await?;
    tracing::info!("stopped cleanly");
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    tokio::select! {
        _ = term.recv() => {}
        r = tokio::signal::ctrl_c() => r.context("cannot watch SIGINT")?,
    }
    Ok(())
}
