//! The `mprun` command line, spelled the way Open MPI and MPICH users type it.

use std::path::PathBuf;

use clap::Parser;

use crate::agent::LauncherKind;
use crate::placement::MapBy;

/// Launch an SPMD job: N ranked copies of PROGRAM, wired together.
#[derive(Debug, Parser)]
#[command(
    name = "mprun",
    version,
    about = "Launch an mpr (or any) program as N ranked processes",
    after_help = "Examples:\n  mprun -n 4 target/release/hello\n  mprun -np 8 --hostfile hosts --tag-output ./sim input.dat\n  mprun -n 4 hostname"
)]
pub(crate) struct Args {
    /// Number of ranks to start (also spelled -np).
    #[arg(short = 'n', long = "np", value_name = "N")]
    pub(crate) ranks: Option<u32>,

    /// Hostfile listing hosts and slots (Open MPI `host slots=N` or MPICH `host:N`).
    #[arg(
        short = 'f',
        long = "hostfile",
        visible_alias = "machinefile",
        value_name = "FILE"
    )]
    pub(crate) hostfile: Option<PathBuf>,

    /// Comma-separated hosts, each optionally `:SLOTS` (e.g. `a,b:2`).
    #[arg(short = 'H', long = "host", value_name = "HOSTS")]
    pub(crate) host: Option<String>,

    /// How ranks are laid out over hosts: fill each host's slots, or round robin.
    #[arg(long = "map-by", value_enum, default_value = "slot")]
    pub(crate) map_by: MapBy,

    /// Allow more ranks than the hosts have slots.
    #[arg(long)]
    pub(crate) oversubscribe: bool,

    /// Bind each rank to a CPU (`core`) or not (`none`). Default: bind
    /// when a host has no more ranks than CPUs, as Open MPI does. `core`
    /// on a host with more ranks than CPUs binds round robin, the same
    /// number of ranks to each CPU.
    #[arg(long = "bind-to", value_enum, value_name = "core|none")]
    pub(crate) bind_to: Option<BindTo>,

    /// Every rank prints its CPU binding to stderr when it starts.
    #[arg(long = "report-bindings")]
    pub(crate) report_bindings: bool,

    /// Export VAR (from this environment) or VAR=VALUE to every rank; repeatable.
    #[arg(short = 'x', value_name = "VAR[=VALUE]")]
    pub(crate) export: Vec<String>,

    /// Prefix every output line with `[rank] `.
    #[arg(long = "tag-output", short = 'l')]
    pub(crate) tag_output: bool,

    /// Abort the job after this many seconds.
    #[arg(long, env = "MPRUN_TIMEOUT", value_name = "SECS")]
    pub(crate) timeout: Option<f64>,

    /// Working directory of the ranks.
    #[arg(long, visible_alias = "wd", value_name = "DIR")]
    pub(crate) wdir: Option<PathBuf>,

    /// How daemons reach the hosts: `ssh` (default for remote hosts), `fork`
    /// (every host is this machine: one local daemon per host), `slurm`
    /// (`srun`, the default inside an allocation).
    #[arg(long, value_enum, value_name = "ssh|fork|slurm")]
    pub(crate) launcher: Option<LauncherKind>,

    /// Command that runs a command on a host (`AGENT HOST COMMAND`), e.g.
    /// `ssh -i key -o StrictHostKeyChecking=no`.
    #[arg(
        long = "launch-agent",
        env = "MPRUN_LAUNCH_AGENT",
        default_value = "ssh",
        value_name = "CMD"
    )]
    pub(crate) launch_agent: String,

    /// Most launch agents (ssh connections) waiting for their daemon at once.
    #[arg(long = "launch-concurrency", default_value_t = 32, value_name = "N")]
    pub(crate) launch_concurrency: usize,

    /// Seconds of silence after which a host's daemon (or, on its side,
    /// mprun) counts as gone; heartbeats go four times as often. Default 4.
    #[arg(long = "link-timeout", env = "MPRUN_LINK_TIMEOUT", value_name = "SECS")]
    pub(crate) link_timeout: Option<f64>,

    /// Network interface (name, or CIDR network) of the ranks' data plane
    /// and of mprun's control port.
    #[arg(long, env = "MPR_INTERFACE", value_name = "NAME|CIDR")]
    pub(crate) interface: Option<String>,

    /// Program to run, then its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PROGRAM [ARGS]..."
    )]
    pub(crate) command: Vec<String>,
}

/// What `--bind-to` asks every rank to do (passed on as `MPR_BIND_TO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum BindTo {
    /// One CPU per rank (round robin when ranks outnumber CPUs).
    Core,
    /// No binding.
    None,
}

impl BindTo {
    /// The value of `MPR_BIND_TO`.
    pub(crate) fn as_env(self) -> &'static str {
        match self {
            BindTo::Core => "core",
            BindTo::None => "none",
        }
    }
}

/// Options that take a value, to find where the program starts.
const OPTIONS_WITH_VALUE: &[&str] = &[
    "-n",
    "--np",
    "-np",
    "-f",
    "--hostfile",
    "--machinefile",
    "-H",
    "--host",
    "--map-by",
    "--bind-to",
    "-x",
    "--timeout",
    "--wdir",
    "--wd",
    "--launcher",
    "--launch-agent",
    "--launch-concurrency",
    "--interface",
    "--link-timeout",
];

/// Rewrites the MPI-traditional single-dash `-np` into `--np`, only among
/// mprun's own options (never inside the program's arguments).
pub(crate) fn normalize(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut iter = args.into_iter();
    if let Some(program_name) = iter.next() {
        out.push(program_name);
    }
    let mut expecting_value = false;
    for arg in iter.by_ref() {
        if expecting_value {
            expecting_value = false;
            out.push(arg);
            continue;
        }
        if arg == "--" || !arg.starts_with('-') {
            out.push(arg);
            break;
        }
        let arg = if arg == "-np" { "--np".to_owned() } else { arg };
        expecting_value = OPTIONS_WITH_VALUE.contains(&arg.as_str());
        out.push(arg);
    }
    out.extend(iter);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Args {
        Args::try_parse_from(normalize(line.split_whitespace().map(String::from))).unwrap()
    }

    #[test]
    fn np_and_program_arguments_are_kept_apart() {
        let args = parse("mprun -np 4 --tag-output prog -np 7 -x");
        assert_eq!(args.ranks, Some(4));
        assert!(args.tag_output);
        assert_eq!(args.command, ["prog", "-np", "7", "-x"]);
    }

    #[test]
    fn open_mpi_and_mpich_spellings_parse() {
        let args = parse(
            "mprun -n 2 -f hosts -x A=1 -x B --map-by node --oversubscribe -l --timeout 5 hostname",
        );
        assert_eq!(args.hostfile, Some(PathBuf::from("hosts")));
        assert_eq!(args.export, ["A=1", "B"]);
        assert_eq!(args.map_by, MapBy::Node);
        assert!(args.oversubscribe && args.tag_output);
        assert_eq!(args.timeout, Some(5.0));
        let args = parse("mprun --machinefile m -H a,b:2 prog");
        assert_eq!(args.hostfile, Some(PathBuf::from("m")));
        assert_eq!(args.host.as_deref(), Some("a,b:2"));
    }

    #[test]
    fn multi_host_options_parse() {
        let args = parse(
            "mprun --launcher fork --launch-agent ssh --launch-concurrency 4 --interface 10.0.0.0/8 prog",
        );
        assert_eq!(args.launcher, Some(LauncherKind::Fork));
        assert_eq!(args.launch_concurrency, 4);
        assert_eq!(args.interface.as_deref(), Some("10.0.0.0/8"));
        assert_eq!(args.command, ["prog"]);
    }

    #[test]
    fn a_program_is_required() {
        assert!(Args::try_parse_from(normalize(["mprun", "-n", "2"].map(String::from))).is_err());
    }
}
