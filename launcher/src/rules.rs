//! The supervision rules' vocabulary, shared by the local supervisor and
//! the multi-host one: why a job stops, how that reads, which exit code it
//! becomes.

use std::time::Duration;

use nix::sys::signal::Signal;

/// Exit code of a job stopped by `--timeout` (as `timeout(1)`).
pub(crate) const TIMEOUT_EXIT: i32 = 124;
/// Exit code of a job that lost a host (its daemon died or its link was cut).
pub(crate) const HOST_LOST_EXIT: i32 = 255;

/// Why the job stops early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cause {
    /// A rank exited with a non-zero code.
    Exit(i32),
    /// A rank was killed by a signal.
    Signal(i32),
    /// A rank called abort (or panicked).
    Abort {
        /// Requested exit code.
        code: i32,
        /// Its message.
        message: String,
    },
    /// A rank exited 0 after `init` without finalizing.
    NoFinalize,
    /// A rank exited without reaching a fence the others wait at.
    LeftFence,
    /// A rank could not be started.
    Spawn(String),
    /// The job ran past `--timeout`.
    Timeout(Duration),
    /// `mprun` received a signal.
    Interrupted(i32),
    /// A host's daemon died, could not be started, or its link went silent.
    HostLost {
        /// The host, as named in the hostfile or allocation.
        host: String,
        /// What happened.
        reason: String,
    },
    /// A host's daemon could not run its ranks (e.g. the program is missing there).
    HostFailed {
        /// Exit code to end with.
        code: i32,
        /// The daemon's message, naming the host.
        message: String,
    },
}

impl Cause {
    /// The exit code `mprun` ends with for this cause.
    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            Cause::Exit(code) => *code,
            Cause::Signal(signal) | Cause::Interrupted(signal) => 128 + signal,
            Cause::Abort { code, .. } => {
                if *code == 0 {
                    1
                } else {
                    *code
                }
            }
            Cause::NoFinalize | Cause::LeftFence => 1,
            Cause::Spawn(_) => 127,
            Cause::Timeout(_) => TIMEOUT_EXIT,
            Cause::HostLost { .. } => HOST_LOST_EXIT,
            Cause::HostFailed { code, .. } => *code,
        }
    }
}

/// The cause of a failure as the end of a sentence.
pub(crate) fn describe(cause: &Cause) -> String {
    match cause {
        Cause::Exit(code) => format!("exited with code {code}"),
        Cause::Signal(signal) => {
            format!("was killed by signal {signal} ({})", signal_name(*signal))
        }
        Cause::Abort { code, message } => {
            let message = message.trim().replace('\n', ": ");
            format!("aborted the job with code {code}: {message}")
        }
        Cause::NoFinalize => {
            "exited without finalizing (it called mpr::init but did not drop the Universe)".into()
        }
        Cause::LeftFence => {
            "exited without calling mpr::init while the other ranks wait for it".into()
        }
        Cause::Spawn(reason) => reason.clone(),
        Cause::Timeout(limit) => format!(
            "the job ran past its timeout of {} s (--timeout)",
            limit.as_secs_f64()
        ),
        Cause::Interrupted(signal) => format!("received {}", signal_name(*signal)),
        Cause::HostLost { host, reason } => format!("host {host} is lost: {reason}"),
        Cause::HostFailed { message, .. } => message.clone(),
    }
}

/// The signal's name (`SIGKILL`), or a placeholder for an unknown number.
pub(crate) fn signal_name(signal: i32) -> &'static str {
    Signal::try_from(signal)
        .map(Signal::as_str)
        .unwrap_or("unknown signal")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_rules() {
        assert_eq!(Cause::Exit(3).exit_code(), 3);
        assert_eq!(Cause::Signal(9).exit_code(), 137);
        let abort = Cause::Abort {
            code: 0,
            message: String::new(),
        };
        assert_eq!(abort.exit_code(), 1);
        let lost = Cause::HostLost {
            host: "n1".into(),
            reason: "link silent".into(),
        };
        assert_eq!(lost.exit_code(), HOST_LOST_EXIT);
        assert_eq!(describe(&lost), "host n1 is lost: link silent");
        assert_eq!(
            describe(&Cause::Signal(9)),
            "was killed by signal 9 (SIGKILL)"
        );
    }
}
