//! Turning the command line into the list of ranks to start: hosts, slots,
//! placement, and each rank's environment.

use std::path::Path;
use std::time::Duration;

use mpr::bootstrap::addresses::{INTERFACE_VAR, MULTI_HOST_VAR};
use mpr::env::var;
use thiserror::Error;

use crate::agent::{self, AgentError, LauncherKind};
use crate::cli::Args;
use crate::cluster::{ClusterPlan, PlannedHost};
use crate::control::{LINK_TIMEOUT, RankLaunch};
use crate::hostfile::{self, HostEntry, HostfileError};
use crate::placement::{self, PlacementError};
use crate::slurm::{self, SlurmError};
use crate::spawn::RankCommand;
use crate::supervisor::{JobOptions, RankSpec};

/// Time between SIGTERM and SIGKILL when the job stops.
const DEFAULT_GRACE: Duration = Duration::from_secs(2);

/// Why a job cannot be launched.
#[derive(Debug, Error)]
pub(crate) enum LaunchError {
    /// The hostfile (or `--host` list) is malformed.
    #[error(transparent)]
    Hostfile(#[from] HostfileError),
    /// The Slurm allocation's variables are malformed.
    #[error(transparent)]
    Slurm(#[from] SlurmError),
    /// The ranks do not fit on the hosts.
    #[error(transparent)]
    Placement(#[from] PlacementError),
    /// `--launch-agent` is unusable.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// `--launcher slurm` outside a Slurm allocation.
    #[error("--launcher slurm needs a Slurm allocation (SLURM_JOB_ID and SLURM_JOB_NODELIST)")]
    NoAllocation,
    /// No address of this machine reaches a host.
    #[error("cannot find an address of this machine that host {host} can reach: {reason}")]
    Route {
        /// The host.
        host: String,
        /// Why.
        reason: String,
    },
    /// `-n 0` or a hostfile without slots.
    #[error("the job has no ranks: give -n N with N >= 1")]
    NoRanks,
    /// A `-x` export names a variable that is not set here.
    #[error("-x {0}: no such variable in mprun's environment (use -x {0}=VALUE)")]
    UnsetExport(String),
    /// `--link-timeout` is not a number of seconds from 0.1 up.
    #[error("--link-timeout {0}: expected a number of seconds of at least 0.1")]
    BadLinkTimeout(f64),
    /// `--timeout` is not a positive number of seconds.
    #[error("--timeout {0}: expected a positive number of seconds")]
    BadTimeout(f64),
    /// A system call failed while setting up the job.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
}

/// How the job runs.
#[derive(Debug)]
pub(crate) enum Mode {
    /// Every rank on this machine, children of `mprun` (the fast path).
    Local(Vec<RankSpec>),
    /// Ranks on several hosts, one daemon per host.
    Cluster(ClusterPlan),
}

/// Everything needed to run the job.
#[derive(Debug)]
pub(crate) struct Job {
    /// The ranks, local or by host.
    pub(crate) mode: Mode,
    /// Job-wide options.
    pub(crate) options: JobOptions,
    /// Bootstrap listener the ranks connect to.
    pub(crate) listener: std::net::TcpListener,
    /// The job secret.
    pub(crate) secret: Vec<u8>,
}

/// Builds the job from the command line.
pub(crate) fn prepare(args: &Args) -> Result<Job, LaunchError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let (hosts, explicit_hosts, from_slurm) = hosts(args, cores)?;
    let all_local = hosts.iter().all(|host| is_local(&host.name));
    let kind = match args.launcher {
        Some(LauncherKind::Slurm) if !from_slurm => return Err(LaunchError::NoAllocation),
        Some(kind) => Some(kind),
        None if all_local => None,
        None if from_slurm => Some(LauncherKind::Slurm),
        None => Some(LauncherKind::Ssh),
    };
    let slots: u32 = hosts.iter().map(|host| host.slots).sum();
    let ranks = args.ranks.unwrap_or(slots);
    if ranks == 0 {
        return Err(LaunchError::NoRanks);
    }
    let mut oversubscribe = args.oversubscribe;
    if !explicit_hosts && ranks > slots {
        eprintln!("mprun: note: {ranks} ranks on {cores} cores: running oversubscribed");
        oversubscribe = true;
    }
    let placement = placement::place(&hosts, ranks, args.map_by, oversubscribe)?;
    let timeout = match args.timeout {
        Some(secs) if secs.is_finite() && secs > 0.0 => Some(Duration::from_secs_f64(secs)),
        Some(secs) => return Err(LaunchError::BadTimeout(secs)),
        None => None,
    };
    let options = JobOptions {
        tag_output: args.tag_output,
        timeout,
        grace: DEFAULT_GRACE,
    };
    let secret = random_hex(16)?;
    let job_id = random_hex(8)?;
    let mut exports = exports(&args.export)?;
    if let Some(interface) = &args.interface {
        exports.push((INTERFACE_VAR.to_owned(), interface.clone()));
    }
    if let Some(kind) = kind {
        let (listener, plan) = cluster_plan(args, kind, &placement, &secret, &job_id, exports)?;
        return Ok(Job {
            mode: Mode::Cluster(plan),
            options,
            listener,
            secret: secret.into_bytes(),
        });
    }
    let listener = listen_loopback().map_err(|source| LaunchError::Io {
        what: "cannot open the bootstrap port",
        source,
    })?;
    let bootstrap = listener.local_addr().map_err(|source| LaunchError::Io {
        what: "cannot read the bootstrap address",
        source,
    })?;
    let ranks = placement
        .ranks
        .iter()
        .map(|place| {
            let mut env = vec![
                (var::RANK.to_owned(), place.rank.to_string()),
                (var::SIZE.to_owned(), ranks.to_string()),
                (var::LOCAL_RANK.to_owned(), place.local_rank.to_string()),
                (var::LOCAL_SIZE.to_owned(), place.local_size.to_string()),
                (var::NODE.to_owned(), place.node.to_string()),
                (var::JOB.to_owned(), job_id.clone()),
                (var::BOOTSTRAP.to_owned(), bootstrap.to_string()),
                (var::SECRET.to_owned(), secret.clone()),
            ];
            if let Some(bind_to) = args.bind_to {
                env.push(("MPR_BIND_TO".to_owned(), bind_to.as_env().to_owned()));
            }
            if args.report_bindings {
                env.push(("MPR_REPORT_BINDINGS".to_owned(), "1".to_owned()));
            }
            env.extend(exports.iter().cloned());
            RankSpec {
                command: RankCommand {
                    command: args.command.clone(),
                    env,
                    wdir: args.wdir.clone(),
                    stdin: place.rank == 0,
                },
                host: place.host.clone(),
            }
        })
        .collect();
    Ok(Job {
        mode: Mode::Local(ranks),
        options,
        listener,
        secret: secret.into_bytes(),
    })
}

/// The plan of a multi-host job, and the control listener its daemons dial.
fn cluster_plan(
    args: &Args,
    kind: LauncherKind,
    placement: &placement::Placement,
    secret: &str,
    job_id: &str,
    mut exports: Vec<(String, String)>,
) -> Result<(std::net::TcpListener, ClusterPlan), LaunchError> {
    let io = |what: &'static str| move |source| LaunchError::Io { what, source };
    let listener =
        listen_control(kind == LauncherKind::Fork).map_err(io("cannot open the control port"))?;
    let port = listener
        .local_addr()
        .map_err(io("cannot read the control port"))?
        .port();
    let cwd = std::env::current_dir().map_err(io("cannot read the working directory"))?;
    let wdir = args.wdir.as_ref().map_or(cwd.clone(), |dir| cwd.join(dir));
    let exe = std::env::current_exe().map_err(io("cannot find the mprun executable"))?;
    let agent = agent::split_words(&args.launch_agent)?;
    let link_timeout = match args.link_timeout {
        None => LINK_TIMEOUT,
        Some(secs) if secs.is_finite() && (0.1..=86_400.0).contains(&secs) => {
            Duration::from_secs_f64(secs)
        }
        Some(secs) => return Err(LaunchError::BadLinkTimeout(secs)),
    };
    // Tunables travel with the job: a remote shell does not have mprun's environment.
    for (name, value) in std::env::vars() {
        if name.starts_with("MPR_") && !exports.iter().any(|(known, _)| *known == name) {
            exports.push((name, value));
        }
    }
    let size = placement.ranks.len() as u32;
    let multi_host = kind != LauncherKind::Fork;
    let loopback = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    // The daemon of this machine (if it has ranks) dials the address the
    // other hosts reach: its ranks then publish that address too.
    let first_remote = placement
        .ranks
        .iter()
        .find(|place| !is_local(&place.host))
        .map(|place| place.host.as_str());
    let local_ip = match (kind, first_remote) {
        (LauncherKind::Fork, _) | (_, None) => loopback,
        (_, Some(remote)) => control_ip(remote, args.interface.as_deref())?,
    };
    let mut hosts: Vec<PlannedHost> = Vec::new();
    for place in &placement.ranks {
        let node = place.node as usize;
        if hosts.len() <= node {
            let ip = if kind == LauncherKind::Fork || is_local(&place.host) {
                local_ip
            } else {
                control_ip(&place.host, args.interface.as_deref())?
            };
            hosts.resize_with(node + 1, || PlannedHost {
                name: String::new(),
                connect: String::new(),
                ranks: Vec::new(),
            });
            hosts[node].name = place.host.clone();
            hosts[node].connect = std::net::SocketAddr::new(ip, port).to_string();
        }
        let mut env = vec![
            (var::RANK.to_owned(), place.rank.to_string()),
            (var::SIZE.to_owned(), size.to_string()),
            (var::LOCAL_RANK.to_owned(), place.local_rank.to_string()),
            (var::LOCAL_SIZE.to_owned(), place.local_size.to_string()),
            (var::NODE.to_owned(), place.node.to_string()),
            (var::JOB.to_owned(), job_id.to_owned()),
            (var::SECRET.to_owned(), secret.to_owned()),
        ];
        if multi_host {
            env.push((MULTI_HOST_VAR.to_owned(), "1".to_owned()));
        }
        env.extend(exports.iter().cloned());
        hosts[node].ranks.push(RankLaunch {
            rank: place.rank,
            env,
            stdin: place.rank == 0,
        });
    }
    hosts.retain(|host| !host.ranks.is_empty());
    let plan = ClusterPlan {
        hosts,
        size,
        command: args.command.clone(),
        wdir: wdir.to_string_lossy().into_owned(),
        kind,
        agent,
        concurrency: args.launch_concurrency,
        exe,
        link_timeout,
    };
    Ok((listener, plan))
}

/// The address of this machine that `host` reaches: the interface's if
/// `--interface` names one, otherwise the source address of the route to
/// the host (asked of the kernel with an unconnected UDP socket: nothing
/// is sent).
fn control_ip(host: &str, interface: Option<&str>) -> Result<std::net::IpAddr, LaunchError> {
    use mpr::bootstrap::addresses::{InterfaceSpec, choose, interfaces};
    let route = |reason: String| LaunchError::Route {
        host: host.to_owned(),
        reason,
    };
    if let Some(text) = interface {
        let spec = InterfaceSpec::parse(text)
            .ok_or_else(|| route(format!("--interface {text:?} is neither a name nor a CIDR")))?;
        let list = interfaces().map_err(|error| route(error.to_string()))?;
        let plane = choose(&list, Some(&spec), true).map_err(route)?;
        return plane
            .addrs
            .first()
            .copied()
            .ok_or_else(|| route("no address".into()));
    }
    use std::net::ToSocketAddrs;
    let target = (host, 9)
        .to_socket_addrs()
        .map_err(|error| route(format!("{host} does not resolve: {error}")))?
        .next()
        .ok_or_else(|| route(format!("{host} does not resolve")))?;
    let unspecified: std::net::SocketAddr = if target.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket =
        std::net::UdpSocket::bind(unspecified).map_err(|error| route(error.to_string()))?;
    socket
        .connect(target)
        .map_err(|error| route(format!("no route: {error}")))?;
    socket
        .local_addr()
        .map(|addr| addr.ip())
        .map_err(|error| route(error.to_string()))
}

/// The control port daemons dial: loopback when they all run here,
/// otherwise every address (IPv6 and IPv4 where possible).
fn listen_control(local: bool) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    if local {
        return listen_loopback();
    }
    let dual = || -> std::io::Result<Socket> {
        let socket = Socket::new(Domain::IPV6, Type::STREAM, None)?;
        socket.set_only_v6(false)?;
        let addr: std::net::SocketAddr = (std::net::Ipv6Addr::UNSPECIFIED, 0).into();
        socket.bind(&addr.into())?;
        Ok(socket)
    };
    let socket = match dual() {
        Ok(socket) => socket,
        Err(_) => {
            let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
            let addr: std::net::SocketAddr = ([0, 0, 0, 0], 0).into();
            socket.bind(&addr.into())?;
            socket
        }
    };
    socket.listen(1024)?;
    Ok(socket.into())
}

/// The job's hosts, whether the user named them (hostfile or `--host`), and
/// whether they come from a Slurm allocation.
fn hosts(args: &Args, cores: u32) -> Result<(Vec<HostEntry>, bool, bool), LaunchError> {
    if let Some(list) = &args.host {
        // `a,b:2` is a one-line-per-host MPICH hostfile in disguise.
        let text = list.split(',').collect::<Vec<_>>().join("\n");
        let parsed = hostfile::parse(Path::new("--host"), &text)?;
        return Ok((parsed.hosts, true, false));
    }
    if let Some(path) = &args.hostfile {
        return Ok((hostfile::read(path)?.hosts, true, false));
    }
    if std::env::var_os("SLURM_JOB_ID").is_some() {
        // Inside a Slurm allocation: its nodes and task counts are the slots.
        let nodes = std::env::var("SLURM_JOB_NODELIST").unwrap_or_default();
        let tasks = std::env::var("SLURM_TASKS_PER_NODE").unwrap_or_default();
        if !nodes.is_empty() && !tasks.is_empty() {
            return Ok((slurm::allocation(&nodes, &tasks)?, true, true));
        }
    }
    let local = HostEntry {
        name: mpr_host_name(),
        slots: cores,
        max_slots: None,
    };
    Ok((vec![local], false, false))
}

pub(crate) fn mpr_host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Whether `name` designates this machine.
pub(crate) fn is_local(name: &str) -> bool {
    let me = mpr_host_name();
    let short = me.split('.').next().unwrap_or(&me);
    name == "localhost"
        || name == me
        || name == short
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `-x VAR` and `-x VAR=VALUE` as pairs.
fn exports(specs: &[String]) -> Result<Vec<(String, String)>, LaunchError> {
    specs
        .iter()
        .map(|spec| match spec.split_once('=') {
            Some((name, value)) => Ok((name.to_owned(), value.to_owned())),
            None => std::env::var(spec)
                .map(|value| (spec.clone(), value))
                .map_err(|_| LaunchError::UnsetExport(spec.clone())),
        })
        .collect()
}

/// The bootstrap listener on loopback, with an accept queue deep enough
/// for every rank (and a burst of strangers) dialling at once: std's
/// default backlog of 128 drops SYNs, which stalls a connect by a second.
pub(crate) fn listen_loopback() -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// `bytes` random bytes as hex.
fn random_hex(bytes: usize) -> Result<String, LaunchError> {
    let mut raw = vec![0u8; bytes];
    getrandom::fill(&mut raw).map_err(|error| LaunchError::Io {
        what: "cannot draw a random job secret",
        source: std::io::Error::other(error.to_string()),
    })?;
    Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_take_values_or_the_environment() {
        let pairs = exports(&["A=1".into(), "PATH".into()]).unwrap();
        assert_eq!(pairs[0], ("A".into(), "1".into()));
        assert_eq!(pairs[1].0, "PATH");
        assert!(matches!(
            exports(&["MPR_SURELY_NOT_SET_ANYWHERE".into()]),
            Err(LaunchError::UnsetExport(_))
        ));
    }

    #[test]
    fn loopback_and_own_name_are_local() {
        assert!(is_local("localhost") && is_local("127.0.0.1") && is_local("::1"));
        assert!(is_local(&mpr_host_name()));
        assert!(!is_local("198.18.0.7"));
    }

    #[test]
    fn secrets_are_random_hex() {
        let a = random_hex(16).unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, random_hex(16).unwrap());
    }
}
