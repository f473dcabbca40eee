//! A lab of "hosts" on this machine: network namespaces joined by veth
//! pairs to a bridge, each running its own `sshd` with a throwaway key.
//! Addresses come from 198.18.0.0/15 (reserved for such tests). Dropping
//! the lab stops its sshd processes and removes its namespaces and links,
//! whatever happened.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The lab.
pub(crate) struct Lab {
    /// Per-lab suffix of every name.
    tag: String,
    /// Key, configs, pid files, hostfile.
    pub(crate) dir: PathBuf,
    bridge: String,
    namespaces: Vec<String>,
    veths: Vec<String>,
    /// The hosts' addresses.
    pub(crate) addrs: Vec<String>,
    /// The address of this machine on the bridge.
    pub(crate) gateway: String,
}

/// Why the lab cannot exist here, if it cannot: not root, or no `ip`.
pub(crate) fn unavailable() -> Option<String> {
    if !nix_is_root() {
        return Some("needs root (network namespaces)".into());
    }
    if !Path::new("/usr/sbin/ip").exists() && !Path::new("/sbin/ip").exists() {
        return Some("needs `ip` (iproute2)".into());
    }
    None
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find(|line| line.starts_with("Uid:"))
            .and_then(|line| line.split_whitespace().nth(2))
            == Some("0")
    })
}

/// Runs a command, panicking with its output if it fails.
pub(crate) fn sh(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("cannot run {program}: {error}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs a command and ignores how it went (cleanup).
fn quiet(program: &str, args: &[&str]) {
    let _ = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Lab {
    /// Builds `hosts` namespaces named after `name` (a few letters), each
    /// with sshd listening on its address.
    pub(crate) fn with_sshd(name: &str, hosts: usize) -> Lab {
        assert!(
            Path::new("/usr/sbin/sshd").exists(),
            "/usr/sbin/sshd is missing: apt-get install -y openssh-server (.ci/run does)"
        );
        let lab = Lab::new(name, hosts);
        lab.start_sshd();
        lab
    }

    /// Builds `hosts` namespaces named after `name` (a few letters).
    pub(crate) fn new(name: &str, hosts: usize) -> Lab {
        let pid = std::process::id();
        let tag = format!("{name}{:x}", pid % 0xfff);
        let subnet = 20 + pid % 200;
        let dir = std::env::temp_dir().join(format!("mprun-lab-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("lab directory");
        let mut lab = Lab {
            bridge: format!("mb{tag}"),
            tag,
            dir,
            namespaces: Vec::new(),
            veths: Vec::new(),
            addrs: Vec::new(),
            gateway: format!("198.18.{subnet}.1"),
        };
        lab.remove_network();
        sh("ip", &["link", "add", &lab.bridge, "type", "bridge"]);
        sh(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/24", lab.gateway),
                "dev",
                &lab.bridge,
            ],
        );
        sh("ip", &["link", "set", &lab.bridge, "up"]);
        for host in 0..hosts {
            let ns = format!("mn{}{host}", lab.tag);
            let veth = format!("mv{}{host}", lab.tag);
            let addr = format!("198.18.{subnet}.{}", 11 + host);
            sh("ip", &["netns", "add", &ns]);
            lab.namespaces.push(ns.clone());
            sh(
                "ip",
                &[
                    "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
                ],
            );
            lab.veths.push(veth.clone());
            sh("ip", &["link", "set", &veth, "master", &lab.bridge, "up"]);
            lab.exec(
                host,
                &["ip", "addr", "add", &format!("{addr}/24"), "dev", "eth0"],
            );
            lab.exec(host, &["ip", "link", "set", "eth0", "up"]);
            lab.exec(host, &["ip", "link", "set", "lo", "up"]);
            lab.addrs.push(addr);
        }
        lab
    }

    /// The lab's network, as `--interface` takes it.
    pub(crate) fn cidr(&self) -> String {
        let net = self.gateway.rsplit_once('.').map_or("", |(net, _)| net);
        format!("{net}.0/24")
    }

    /// Runs a command inside host `index`'s namespace (panics if it fails).
    pub(crate) fn exec(&self, index: usize, args: &[&str]) {
        let mut all = vec!["netns", "exec", self.namespaces[index].as_str()];
        all.extend_from_slice(args);
        sh("ip", &all);
    }

    /// Name of host `index`'s namespace.
    pub(crate) fn namespace(&self, index: usize) -> &str {
        &self.namespaces[index]
    }

    /// Starts an sshd with a throwaway host key in every namespace,
    /// accepting a throwaway user key (see [`Lab::agent`]).
    pub(crate) fn start_sshd(&self) {
        let key = self.dir.join("key");
        let host_key = self.dir.join("host_key");
        for path in [&key, &host_key] {
            sh(
                "ssh-keygen",
                &[
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-f",
                    path.to_str().unwrap(),
                ],
            );
        }
        std::fs::copy(self.dir.join("key.pub"), self.dir.join("authorized_keys"))
            .expect("authorized key");
        std::fs::create_dir_all("/run/sshd").expect("sshd privilege separation directory");
        for (host, addr) in self.addrs.iter().enumerate() {
            let config = self.dir.join(format!("sshd{host}.conf"));
            std::fs::write(
                &config,
                format!(
                    "ListenAddress {addr}\nHostKey {}\nAuthorizedKeysFile {}\nPidFile {}\n\
                     StrictModes no\nUsePAM no\nPasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
                     MaxStartups 100:30:200\nMaxSessions 100\n",
                    host_key.display(),
                    self.dir.join("authorized_keys").display(),
                    self.dir.join(format!("sshd{host}.pid")).display(),
                ),
            )
            .expect("sshd config");
            // sshd forks into the background once it listens: ready on return.
            self.exec(host, &["/usr/sbin/sshd", "-f", config.to_str().unwrap()]);
        }
    }

    /// The `--launch-agent` that reaches the lab's hosts.
    pub(crate) fn agent(&self) -> String {
        format!(
            "ssh -i {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
             -o LogLevel=ERROR -o BatchMode=yes -o ConnectTimeout=5",
            self.dir.join("key").display()
        )
    }

    /// Writes a hostfile giving each host `slots` slots.
    pub(crate) fn hostfile(&self, slots: u32) -> PathBuf {
        let path = self.dir.join(format!("hosts{slots}"));
        let text: String = self
            .addrs
            .iter()
            .map(|addr| format!("{addr} slots={slots}\n"))
            .collect();
        std::fs::write(&path, text).expect("hostfile");
        path
    }

    /// Cuts host `index` off the bridge.
    pub(crate) fn cut(&self, index: usize) {
        sh("ip", &["link", "set", &self.veths[index], "down"]);
    }

    fn remove_network(&self) {
        for ns in &self.namespaces {
            // Whatever still runs there (sshd sessions of a cut link, ...).
            if let Ok(output) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&output.stdout).split_whitespace() {
                    quiet("kill", &["-9", pid]);
                }
            }
            quiet("ip", &["netns", "del", ns]);
        }
        for veth in &self.veths {
            quiet("ip", &["link", "del", veth]);
        }
        quiet("ip", &["link", "del", &self.bridge]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for host in 0..self.namespaces.len() {
            let pidfile = self.dir.join(format!("sshd{host}.pid"));
            if let Some(pid) = std::fs::read_to_string(pidfile)
                .ok()
                .and_then(|text| text.trim().parse::<u32>().ok())
            {
                quiet("kill", &[&pid.to_string()]);
            }
        }
        self.remove_network();
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = &self.tag;
    }
}
