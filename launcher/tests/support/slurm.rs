//! A real Slurm cluster on this machine for tests: munged, slurmctld in
//! the root namespace, and one slurmd per lab namespace (each namespace is
//! a node `n1`, `n2`, ... at its lab address), all configured in a
//! temporary directory. Dropping it cancels the jobs and stops every
//! daemon it started.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::lab::Lab;

/// The running cluster.
pub(crate) struct Slurm {
    /// Directory of the configuration, state, spool and logs.
    pub(crate) dir: PathBuf,
    /// `slurm.conf`, to put in `SLURM_CONF`.
    pub(crate) conf: PathBuf,
    daemons: Vec<Child>,
    munged_pid: PathBuf,
}

/// Why Slurm cannot run here, if it cannot: its programs are missing.
pub(crate) fn unavailable() -> Option<String> {
    for program in [
        "/usr/sbin/slurmctld",
        "/usr/sbin/slurmd",
        "/usr/sbin/munged",
        "/usr/bin/salloc",
    ] {
        if !Path::new(program).exists() {
            return Some(format!(
                "{program} is missing: apt-get install -y slurm-wlm munge (.ci/run does)"
            ));
        }
    }
    None
}

/// A TCP port nobody listens on now (bound to port 0, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

/// Shell lines that mount, inside a fresh `ip netns exec` (which mounts a
/// new /sys), the cgroup hierarchies this machine has, as slurmd needs them.
fn cgroup_mounts() -> String {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut script = String::new();
    for line in mounts.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, target, kind, options, ..] = fields[..] else {
            continue;
        };
        if !target.starts_with("/sys/fs/cgroup") {
            continue;
        }
        match kind {
            "tmpfs" | "cgroup" | "cgroup2" => {
                script.push_str(&format!(
                    "mkdir -p {target}; mount -t {kind} -o {options} cg {target} || exit 1; "
                ));
            }
            _ => {}
        }
    }
    script
}

impl Slurm {
    /// Starts munged, slurmctld on the lab's bridge address, and a slurmd
    /// per lab host with `cpus` CPUs each.
    pub(crate) fn start(lab: &Lab, cpus: u32) -> Slurm {
        let dir = lab.dir.join("slurm");
        for sub in ["state", "spool", "log"] {
            std::fs::create_dir_all(dir.join(sub)).expect("slurm directories");
        }
        let mut slurm = Slurm {
            conf: dir.join("slurm.conf"),
            munged_pid: dir.join("munged.pid"),
            dir,
            daemons: Vec::new(),
        };
        let d = slurm.dir.display().to_string();
        let socket = format!("{d}/munge.sock");
        let status = Command::new("/usr/sbin/munged")
            .args([
                "--force",
                &format!("--socket={socket}"),
                &format!("--pid-file={d}/munged.pid"),
                &format!("--seed-file={d}/munge.seed"),
                &format!("--log-file={d}/log/munged.log"),
                "--key-file=/etc/munge/munge.key",
            ])
            .status()
            .expect("munged runs");
        // munged forks into the background once its socket is ready.
        assert!(status.success(), "munged failed: see {d}/log/munged.log");
        let nodes: String = lab
            .addrs
            .iter()
            .enumerate()
            .map(|(index, addr)| {
                format!(
                    "NodeName=n{} NodeHostname={} NodeAddr={addr} CPUs={cpus} State=UNKNOWN\n",
                    index + 1,
                    hostname()
                )
            })
            .collect();
        let node_list = format!("n[1-{}]", lab.addrs.len());
        let conf = format!(
            "ClusterName=mprtest\n\
             SlurmctldHost={}({})\n\
             SlurmctldPort={}\nSlurmdPort={}\n\
             AuthType=auth/munge\nAuthInfo=socket={socket}\nCredType=cred/munge\n\
             SlurmUser=root\nSlurmdUser=root\n\
             StateSaveLocation={d}/state\nSlurmdSpoolDir={d}/spool/%n\n\
             SlurmctldPidFile={d}/slurmctld.pid\nSlurmdPidFile={d}/slurmd.%n.pid\n\
             SlurmctldLogFile={d}/log/slurmctld.log\nSlurmdLogFile={d}/log/slurmd.%n.log\n\
             ProctrackType=proctrack/pgid\nTaskPlugin=task/none\n\
             JobAcctGatherType=jobacct_gather/none\n\
             SelectType=select/cons_tres\nSelectTypeParameters=CR_CPU\n\
             MpiDefault=none\nReturnToService=2\nMailProg=/bin/true\n\
             SlurmdParameters=config_overrides\nKillWait=2\n\
             {nodes}\
             PartitionName=main Nodes={node_list} Default=YES MaxTime=INFINITE State=UP\n",
            hostname(),
            lab.gateway,
            free_port(),
            free_port(),
        );
        std::fs::write(&slurm.conf, conf).expect("slurm.conf");
        let ctld = Command::new("/usr/sbin/slurmctld")
            .args(["-D", "-f", slurm.conf.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("slurmctld starts");
        slurm.daemons.push(ctld);
        let mounts = cgroup_mounts();
        for index in 0..lab.addrs.len() {
            std::fs::create_dir_all(slurm.dir.join(format!("spool/n{}", index + 1)))
                .expect("slurmd spool");
            let script = format!(
                "{mounts}exec /usr/sbin/slurmd -D -N n{} -f {}",
                index + 1,
                slurm.conf.display()
            );
            let slurmd = Command::new("ip")
                .args(["netns", "exec", lab.namespace(index), "sh", "-c", &script])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("slurmd starts");
            slurm.daemons.push(slurmd);
        }
        slurm
    }

    /// A Slurm client command (`salloc`, `sbatch`, ...) aimed at this cluster.
    pub(crate) fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.env("SLURM_CONF", &self.conf);
        command
    }

    /// The logs, for a failure message.
    pub(crate) fn logs(&self) -> String {
        let mut text = String::new();
        if let Ok(entries) = std::fs::read_dir(self.dir.join("log")) {
            for entry in entries.flatten() {
                let body = std::fs::read_to_string(entry.path()).unwrap_or_default();
                let tail: Vec<&str> = body.lines().rev().take(15).collect();
                text.push_str(&format!("== {}\n", entry.path().display()));
                for line in tail.into_iter().rev() {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
        text
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

impl Drop for Slurm {
    fn drop(&mut self) {
        let _ = self
            .command("scancel")
            .args(["--full", "--user=root"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        for daemon in self.daemons.iter_mut().rev() {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
        if let Some(pid) = std::fs::read_to_string(&self.munged_pid)
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok())
        {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
}
