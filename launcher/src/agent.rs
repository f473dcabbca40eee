//! Launch agents: the command lines that start a per-host daemon.
//!
//! - `fork`: the daemon is a child of `mprun` on this machine (every "host"
//!   is this machine: for tests, and for hosts that are all local);
//! - `ssh` (the default for remote hosts): `AGENT HOST 'MPRUN --mprun-daemon
//!   ...'`, where `AGENT` is `--launch-agent` (default `ssh`), the way Open
//!   MPI's rsh agent and Hydra's launcher-exec work;
//! - `slurm`: one `srun` starting one daemon per node of the allocation.
//!
//! The daemon reads the job secret from its stdin (fork, ssh) or from
//! `MPRUN_DAEMON_SECRET` (srun propagates the environment), never from its
//! command line, which other users of the host can read.

use std::path::Path;
use std::process::{Command, Stdio};

use clap::ValueEnum;
use thiserror::Error;

use crate::daemon::{DAEMON_ARG, SECRET_ENV};

/// How per-host daemons are started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LauncherKind {
    /// Over ssh (or the `--launch-agent` command).
    Ssh,
    /// As children of `mprun` on this machine.
    Fork,
    /// With `srun`, inside a Slurm allocation.
    Slurm,
}

/// Why a launch agent command line is unusable.
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum AgentError {
    /// `--launch-agent` is empty.
    #[error("--launch-agent is empty: give a command such as `ssh -o BatchMode=yes`")]
    Empty,
    /// A quote is not closed.
    #[error("--launch-agent {0:?}: unterminated quote")]
    Unterminated(String),
}

/// Splits a command line into words, honouring single and double quotes
/// and backslash escapes (a small subset of the shell's rules).
pub(crate) fn split_words(line: &str) -> Result<Vec<String>, AgentError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(AgentError::Unterminated(line.to_owned())),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => word.push(c),
                            None => return Err(AgentError::Unterminated(line.to_owned())),
                        },
                        Some(c) => word.push(c),
                        None => return Err(AgentError::Unterminated(line.to_owned())),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    word.push(c);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    if words.is_empty() {
        return Err(AgentError::Empty);
    }
    Ok(words)
}

/// Quotes `word` for a POSIX shell (the remote side of ssh).
pub(crate) fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+".contains(c))
    {
        return word.to_owned();
    }
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// The daemon's arguments after the executable.
pub(crate) fn daemon_args(connect: &str, host: Option<u32>) -> Vec<String> {
    let mut args = vec![
        DAEMON_ARG.to_owned(),
        "--connect".to_owned(),
        connect.to_owned(),
    ];
    if let Some(host) = host {
        args.extend(["--host-index".to_owned(), host.to_string()]);
    }
    args
}

/// The program and arguments that start the daemon of host `index`
/// (`name`) through `kind`; `agent` is the split `--launch-agent`.
pub(crate) fn host_command_line(
    kind: LauncherKind,
    agent: &[String],
    exe: &Path,
    name: &str,
    index: u32,
    connect: &str,
) -> Vec<String> {
    let mut daemon = vec![exe.to_string_lossy().into_owned()];
    daemon.extend(daemon_args(connect, Some(index)));
    match kind {
        LauncherKind::Fork => daemon,
        LauncherKind::Ssh | LauncherKind::Slurm => {
            let remote = daemon
                .iter()
                .map(|word| shell_quote(word))
                .collect::<Vec<_>>()
                .join(" ");
            let mut line = agent.to_vec();
            line.push(name.to_owned());
            line.push(remote);
            line
        }
    }
}

/// `srun` starting one daemon on each of `nodes` (the daemons find their
/// host by node name); a daemon that fails takes the others down.
pub(crate) fn srun_command_line(exe: &Path, nodes: &[String], connect: &str) -> Vec<String> {
    let count = nodes.len().to_string();
    let mut line: Vec<String> = [
        "srun",
        "--nodes",
        &count,
        "--ntasks",
        &count,
        "--ntasks-per-node=1",
        "--kill-on-bad-exit=1",
        "--export=ALL",
        "--cpu-bind=none",
        "--nodelist",
        &nodes.join(","),
    ]
    .map(String::from)
    .to_vec();
    line.push(exe.to_string_lossy().into_owned());
    line.extend(daemon_args(connect, None));
    line
}

/// A [`Command`] for `line`, in a process group of its own (a Ctrl-C on
/// `mprun`'s terminal must reach the job through `mprun`, not kill the
/// agents), with the secret in its environment if `secret_env` is given.
pub(crate) fn command(line: &[String], secret_env: Option<&str>) -> Option<Command> {
    use std::os::unix::process::CommandExt;
    let (program, args) = line.split_first()?;
    let mut command = Command::new(program);
    command
        .args(args)
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(secret) = secret_env {
        command.env(SECRET_ENV, secret);
    }
    Some(command)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn agent_lines_split_like_a_shell() {
        assert_eq!(
            split_words("ssh -i '/tmp/my key' -o \"A=b c\" x\\ y").unwrap(),
            ["ssh", "-i", "/tmp/my key", "-o", "A=b c", "x y"]
        );
        assert_eq!(split_words("  "), Err(AgentError::Empty));
        assert!(matches!(
            split_words("ssh 'x"),
            Err(AgentError::Unterminated(_))
        ));
    }

    #[test]
    fn ssh_line_carries_a_quoted_remote_command() {
        let line = host_command_line(
            LauncherKind::Ssh,
            &["ssh".into(), "-p".into(), "2222".into()],
            Path::new("/opt/my dir/mprun"),
            "node7",
            3,
            "10.0.0.1:4000",
        );
        assert_eq!(
            line,
            [
                "ssh",
                "-p",
                "2222",
                "node7",
                "'/opt/my dir/mprun' --mprun-daemon --connect 10.0.0.1:4000 --host-index 3"
            ]
        );
        let fork = host_command_line(
            LauncherKind::Fork,
            &[],
            Path::new("/bin/mprun"),
            "a",
            0,
            "127.0.0.1:1",
        );
        assert_eq!(fork[0], "/bin/mprun");
        assert_eq!(fork[1], DAEMON_ARG);
    }

    #[test]
    fn srun_starts_one_daemon_per_node_and_kills_on_bad_exit() {
        let line = srun_command_line(
            Path::new("/bin/mprun"),
            &["n1".into(), "n2".into()],
            "10.0.0.1:9",
        );
        assert_eq!(line[0], "srun");
        assert!(line.contains(&"--kill-on-bad-exit=1".to_owned()));
        assert!(line.contains(&"n1,n2".to_owned()));
        assert!(line.ends_with(&[
            "/bin/mprun".to_owned(),
            DAEMON_ARG.to_owned(),
            "--connect".to_owned(),
            "10.0.0.1:9".to_owned()
        ]));
    }

    proptest! {
        #[test]
        fn quoting_survives_the_split(words in proptest::collection::vec(".{0,12}", 1..6)) {
            let line = words.iter().map(|w| shell_quote(w)).collect::<Vec<_>>().join(" ");
            prop_assert_eq!(split_words(&line).unwrap(), words);
        }
    }
}
