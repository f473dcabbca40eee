//! Turning the command line into the list of ranks to start: hosts, slots,
//! placement, and each rank's environment.

use std::path::Path;
use std::time::Duration;

use mpr::env::var;
use thiserror::Error;

use crate::cli::Args;
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
    /// A host is not this machine, and remote launch is not available.
    #[error("host {0:?} is not this machine: mprun starts ranks on the local host only so far")]
    RemoteHost(String),
    /// `-n 0` or a hostfile without slots.
    #[error("the job has no ranks: give -n N with N >= 1")]
    NoRanks,
    /// A `-x` export names a variable that is not set here.
    #[error("-x {0}: no such variable in mprun's environment (use -x {0}=VALUE)")]
    UnsetExport(String),
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

/// Everything needed to run the job.
#[derive(Debug)]
pub(crate) struct Job {
    /// Ranks in world-rank order.
    pub(crate) ranks: Vec<RankSpec>,
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
    let (hosts, explicit_hosts) = hosts(args, cores)?;
    for host in &hosts {
        if !is_local(&host.name) {
            return Err(LaunchError::RemoteHost(host.name.clone()));
        }
    }
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
    let listener = listen_loopback().map_err(|source| LaunchError::Io {
        what: "cannot open the bootstrap port",
        source,
    })?;
    let bootstrap = listener.local_addr().map_err(|source| LaunchError::Io {
        what: "cannot read the bootstrap address",
        source,
    })?;
    let secret = random_hex(16)?;
    let job_id = random_hex(8)?;
    let exports = exports(&args.export)?;
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
        ranks,
        options: JobOptions {
            tag_output: args.tag_output,
            timeout,
            grace: DEFAULT_GRACE,
        },
        listener,
        secret: secret.into_bytes(),
    })
}

/// The job's hosts, and whether the user named them (hostfile or `--host`).
fn hosts(args: &Args, cores: u32) -> Result<(Vec<HostEntry>, bool), LaunchError> {
    if let Some(list) = &args.host {
        // `a,b:2` is a one-line-per-host MPICH hostfile in disguise.
        let text = list.split(',').collect::<Vec<_>>().join("\n");
        let parsed = hostfile::parse(Path::new("--host"), &text)?;
        return Ok((parsed.hosts, true));
    }
    if let Some(path) = &args.hostfile {
        return Ok((hostfile::read(path)?.hosts, true));
    }
    if std::env::var_os("SLURM_JOB_ID").is_some() {
        // Inside a Slurm allocation: its nodes and task counts are the slots.
        let nodes = std::env::var("SLURM_JOB_NODELIST").unwrap_or_default();
        let tasks = std::env::var("SLURM_TASKS_PER_NODE").unwrap_or_default();
        if !nodes.is_empty() && !tasks.is_empty() {
            return Ok((slurm::allocation(&nodes, &tasks)?, true));
        }
    }
    let local = HostEntry {
        name: mpr_host_name(),
        slots: cores,
        max_slots: None,
    };
    Ok((vec![local], false))
}

fn mpr_host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Whether `name` designates this machine.
fn is_local(name: &str) -> bool {
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
fn listen_loopback() -> std::io::Result<std::net::TcpListener> {
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
