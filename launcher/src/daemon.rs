//! The per-host daemon: `mprun --mprun-daemon --connect ADDR [--host-index I]`.
//!
//! Started once per host by a launch agent (ssh, srun, or a plain fork), it
//! dials `mprun`'s control port, proves the job secret (read from
//! `MPRUN_DAEMON_SECRET`, or from the first line of stdin when started over
//! ssh, so it never shows in `ps`), and receives its launch spec. It checks
//! that the program and working directory exist here (mprun assumes a
//! shared filesystem), starts the host's ranks in a process group led by a
//! guard (see `spawn`), serves their bootstrap on loopback (their cards go
//! up as one batch per fence), relays their output, bootstrap events and
//! exits, and forwards signals. When `mprun` goes away (the link closes or
//! stays silent for [`LINK_TIMEOUT`], or the agent closes stdin), the guard
//! kills every rank of this host.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use mio::net::TcpStream;
use thiserror::Error;

use crate::control::{
    ControlReader, Down, LINK_TIMEOUT, LaunchSpec, MAX_DOWN_FRAME, Up, encode, same_secret,
};
use crate::daemon_loop::Daemon;
use crate::spawn::Guard;

/// Hidden first argument that turns `mprun` into a per-host daemon.
pub(crate) const DAEMON_ARG: &str = "--mprun-daemon";
/// Variable carrying the job secret to a daemon started by fork or srun.
pub(crate) const SECRET_ENV: &str = "MPRUN_DAEMON_SECRET";

/// How long the daemon tries to reach `mprun`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the daemon stops without finishing its ranks.
#[derive(Debug, Error)]
pub(crate) enum DaemonError {
    /// The command line is not the one `mprun` builds.
    #[error("bad daemon arguments: {0}")]
    Usage(String),
    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The peer at the control address did not prove the job secret.
    #[error("the launcher at {0} did not prove the job secret")]
    Impostor(String),
    /// The control link broke or went silent: `mprun` is gone.
    #[error("lost the link to mprun: {0}; killing this host's ranks")]
    LinkLost(String),
}

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DaemonError {
    let what = what.into();
    move |source| DaemonError::Io { what, source }
}

/// The daemon's entry point (`args` follow [`DAEMON_ARG`]).
pub(crate) fn daemon_main(args: &[String]) -> ! {
    match run(args) {
        Ok(()) => std::process::exit(0),
        Err(error) => {
            eprintln!("mprun daemon on {}: {error}", node_name());
            std::process::exit(1)
        }
    }
}

/// This node's name: Slurm's name for it, or the host name.
fn node_name() -> String {
    std::env::var("SLURMD_NODENAME").unwrap_or_else(|_| crate::job::mpr_host_name())
}

struct DaemonArgs {
    connect: String,
    host: Option<u32>,
}

fn parse_args(args: &[String]) -> Result<DaemonArgs, DaemonError> {
    let mut connect = None;
    let mut host = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let mut value = || {
            iter.next()
                .cloned()
                .ok_or_else(|| DaemonError::Usage(format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--connect" => connect = Some(value()?),
            "--host-index" => {
                let text = value()?;
                host = Some(
                    text.parse()
                        .map_err(|_| DaemonError::Usage(format!("--host-index {text}")))?,
                );
            }
            other => return Err(DaemonError::Usage(format!("unknown argument {other:?}"))),
        }
    }
    let connect = connect.ok_or_else(|| DaemonError::Usage("--connect is required".into()))?;
    Ok(DaemonArgs { connect, host })
}

/// The secret, and whether it came over stdin (whose end then means that
/// the launch agent, hence `mprun`, is gone).
fn read_secret() -> Result<(Vec<u8>, bool), DaemonError> {
    if let Ok(secret) = std::env::var(SECRET_ENV) {
        return Ok((secret.into_bytes(), false));
    }
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    let mut stdin = std::io::stdin().lock();
    while line.len() < 1024 {
        match stdin.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return Err(io("cannot read the job secret from stdin")(error)),
        }
    }
    if line.is_empty() {
        return Err(DaemonError::Usage(format!(
            "no job secret: set {SECRET_ENV} or write it on stdin"
        )));
    }
    Ok((line, true))
}

fn connect(addr: &str) -> Result<std::net::TcpStream, DaemonError> {
    let candidates: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(io(format!("cannot resolve mprun's address {addr}")))?
        .collect();
    let mut last = std::io::Error::new(ErrorKind::NotFound, "no address");
    for candidate in candidates {
        match std::net::TcpStream::connect_timeout(&candidate, CONNECT_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(error) => last = error,
        }
    }
    Err(io(format!("cannot connect to mprun at {addr}"))(last))
}

/// Reads the launch spec (blocking, bounded by [`LINK_TIMEOUT`] per read),
/// and returns it with the reader, which may hold the messages after it.
fn receive_spec(
    stream: &mut std::net::TcpStream,
    addr: &str,
) -> Result<(LaunchSpec, ControlReader<Down>), DaemonError> {
    stream
        .set_read_timeout(Some(LINK_TIMEOUT))
        .map_err(io("cannot set a read timeout"))?;
    let mut reader = ControlReader::<Down>::new(MAX_DOWN_FRAME);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match reader.next_message() {
            Ok(Some(Down::Launch(spec))) => return Ok((*spec, reader)),
            Ok(Some(_)) => continue,
            Ok(None) => {}
            Err(error) => return Err(DaemonError::LinkLost(error.to_string())),
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err(DaemonError::Impostor(addr.to_owned())),
            Ok(n) => reader.push(&chunk[..n]),
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return Err(DaemonError::LinkLost(error.to_string())),
        }
    }
}

/// Why the ranks cannot run here, if they cannot: the program or the
/// working directory does not exist on this host.
pub(crate) fn check_paths(spec: &LaunchSpec, host: &str) -> Result<(), String> {
    let wdir = Path::new(&spec.wdir);
    if !wdir.is_dir() {
        return Err(format!(
            "working directory {} not found on host {host}: mprun assumes a shared filesystem \
             (the same paths on every host)",
            wdir.display()
        ));
    }
    let program = spec.command.first().map(String::as_str).unwrap_or("");
    let found = if program.contains('/') {
        executable(&wdir.join(program))
    } else {
        std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| executable(&wdir.join(dir).join(program)))
        })
    };
    if found {
        Ok(())
    } else {
        Err(format!(
            "program {program} not found on host {host}: mprun assumes a shared filesystem \
             (the same program path and working directory on every host)"
        ))
    }
}

fn executable(path: &PathBuf) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

fn run(args: &[String]) -> Result<(), DaemonError> {
    let args = parse_args(args)?;
    let (secret, over_stdin) = read_secret()?;
    let mut stream = connect(&args.connect)?;
    let _ = stream.set_nodelay(true);
    let hello = Up::Hello {
        host: args.host,
        node_name: node_name(),
        secret: secret.clone(),
    };
    stream
        .write_all(&encode(&hello))
        .map_err(io("cannot greet mprun"))?;
    let (spec, reader) = receive_spec(&mut stream, &args.connect)?;
    if !same_secret(&spec.secret, &secret) {
        return Err(DaemonError::Impostor(args.connect));
    }
    stream
        .set_nonblocking(true)
        .map_err(io("cannot make the control link non-blocking"))?;
    let mut daemon = Daemon::new(TcpStream::from_std(stream), reader, &spec)?;
    if over_stdin {
        daemon.watch_stdin()?;
    }
    if let Err(message) = check_paths(&spec, &spec.host) {
        daemon.send(&Up::Failed { code: 127, message });
        daemon.send(&Up::Done);
        return daemon.flush_blocking();
    }
    let guard = Guard::start().map_err(io("cannot start the guard process"))?;
    daemon.spawn_all(&spec, guard.group())?;
    let result = daemon.event_loop();
    // Whatever happened, nothing of this host's job outlives the daemon.
    guard.release();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(program: &str, wdir: &str) -> LaunchSpec {
        LaunchSpec {
            secret: Vec::new(),
            host: "h1".into(),
            size: 1,
            command: vec![program.into()],
            wdir: wdir.into(),
            ranks: Vec::new(),
            link_timeout_ms: 4000,
        }
    }

    #[test]
    fn missing_program_or_directory_is_a_clear_error_naming_the_host() {
        assert!(check_paths(&spec("sh", "/"), "h1").is_ok());
        assert!(check_paths(&spec("/bin/sh", "/tmp"), "h1").is_ok());
        let error = check_paths(&spec("/no/such/prog", "/"), "h1").unwrap_err();
        assert!(error.contains("program /no/such/prog not found on host h1"));
        assert!(error.contains("shared filesystem"));
        let error = check_paths(&spec("sh", "/no/such/dir"), "h1").unwrap_err();
        assert!(error.contains("working directory /no/such/dir not found on host h1"));
    }

    #[test]
    fn arguments_are_checked() {
        let args: Vec<String> = ["--connect", "a:1", "--host-index", "3"]
            .map(String::from)
            .to_vec();
        let parsed = parse_args(&args).unwrap();
        assert_eq!((parsed.connect.as_str(), parsed.host), ("a:1", Some(3)));
        assert!(parse_args(&["--host-index".into()]).is_err());
        assert!(parse_args(&["--bogus".into()]).is_err());
        assert!(parse_args(&[]).is_err());
    }
}
