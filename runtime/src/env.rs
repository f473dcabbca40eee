//! The job environment a launcher hands each rank (`MPR_*` variables).

use thiserror::Error;

/// Names of the variables of the job contract.
pub mod var {
    /// World rank of this process.
    pub const RANK: &str = "MPR_RANK";
    /// Number of ranks in the job.
    pub const SIZE: &str = "MPR_SIZE";
    /// Rank among the ranks on this host.
    pub const LOCAL_RANK: &str = "MPR_LOCAL_RANK";
    /// Number of ranks on this host.
    pub const LOCAL_SIZE: &str = "MPR_LOCAL_SIZE";
    /// Index of this host among the job's hosts.
    pub const NODE: &str = "MPR_NODE";
    /// Job id, unique per launch.
    pub const JOB: &str = "MPR_JOB";
    /// `host:port` of the bootstrap server.
    pub const BOOTSTRAP: &str = "MPR_BOOTSTRAP";
    /// Per-job secret every connection proves.
    pub const SECRET: &str = "MPR_SECRET";
}

/// Why the `MPR_*` variables do not describe a job.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EnvError {
    /// Some job variables are set but this one is missing.
    #[error(
        "{name} is not set although other MPR_* job variables are (was this rank started by mprun?)"
    )]
    Missing {
        /// Name of the missing variable.
        name: &'static str,
    },
    /// A variable holds a value of the wrong form.
    #[error("{name}={value:?} is invalid: expected {expected}")]
    Invalid {
        /// Name of the variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What it should look like.
        expected: &'static str,
    },
}

/// A rank's place in a launched job, read from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEnv {
    /// World rank.
    pub rank: u32,
    /// World size.
    pub size: u32,
    /// Rank on this host.
    pub local_rank: u32,
    /// Ranks on this host.
    pub local_size: u32,
    /// Index of this host.
    pub node: u32,
    /// Job id.
    pub job: String,
    /// Bootstrap server address.
    pub bootstrap: String,
    /// Job secret.
    pub secret: String,
}

impl JobEnv {
    /// Reads the job variables through `lookup` (normally `std::env::var`).
    /// `Ok(None)` when none is set: the program runs as a singleton.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<JobEnv>, EnvError> {
        if lookup(var::RANK).is_none()
            && lookup(var::SIZE).is_none()
            && lookup(var::BOOTSTRAP).is_none()
        {
            return Ok(None);
        }
        let text = |name: &'static str| lookup(name).ok_or(EnvError::Missing { name });
        let number = |name: &'static str| -> Result<u32, EnvError> {
            let value = text(name)?;
            value.trim().parse().map_err(|_| EnvError::Invalid {
                name,
                value,
                expected: "a non-negative integer",
            })
        };
        let rank = number(var::RANK)?;
        let size = number(var::SIZE)?;
        if size == 0 || rank >= size {
            return Err(EnvError::Invalid {
                name: var::RANK,
                value: rank.to_string(),
                expected: "a rank below MPR_SIZE (which must be positive)",
            });
        }
        let local_rank = lookup(var::LOCAL_RANK).map_or(Ok(0), |_| number(var::LOCAL_RANK))?;
        let local_size = lookup(var::LOCAL_SIZE).map_or(Ok(1), |_| number(var::LOCAL_SIZE))?;
        let node = lookup(var::NODE).map_or(Ok(0), |_| number(var::NODE))?;
        let bootstrap = text(var::BOOTSTRAP)?;
        if !bootstrap.contains(':') {
            return Err(EnvError::Invalid {
                name: var::BOOTSTRAP,
                value: bootstrap,
                expected: "host:port",
            });
        }
        let secret = text(var::SECRET)?;
        if secret.is_empty() {
            return Err(EnvError::Invalid {
                name: var::SECRET,
                value: secret,
                expected: "a non-empty secret",
            });
        }
        Ok(Some(JobEnv {
            rank,
            size,
            local_rank,
            local_size,
            node,
            job: lookup(var::JOB).unwrap_or_default(),
            bootstrap,
            secret,
        }))
    }

    /// Reads the job variables from the process environment.
    pub fn from_process() -> Result<Option<JobEnv>, EnvError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn no_variables_means_singleton() {
        assert_eq!(JobEnv::from_lookup(lookup(&[])), Ok(None));
    }

    #[test]
    fn full_environment_parses() {
        let env = JobEnv::from_lookup(lookup(&[
            ("MPR_RANK", "2"),
            ("MPR_SIZE", "4"),
            ("MPR_LOCAL_RANK", "0"),
            ("MPR_LOCAL_SIZE", "2"),
            ("MPR_NODE", "1"),
            ("MPR_JOB", "j1"),
            ("MPR_BOOTSTRAP", "127.0.0.1:4000"),
            ("MPR_SECRET", "s"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            (env.rank, env.size, env.local_rank, env.local_size, env.node),
            (2, 4, 0, 2, 1)
        );
        assert_eq!(env.bootstrap, "127.0.0.1:4000");
    }

    #[test]
    fn errors_name_the_variable() {
        let missing = JobEnv::from_lookup(lookup(&[("MPR_RANK", "0"), ("MPR_SIZE", "1")]));
        assert_eq!(
            missing,
            Err(EnvError::Missing {
                name: "MPR_BOOTSTRAP"
            })
        );
        let bad = JobEnv::from_lookup(lookup(&[("MPR_RANK", "x"), ("MPR_SIZE", "1")])).unwrap_err();
        assert!(bad.to_string().contains("MPR_RANK=\"x\""), "{bad}");
        let out_of_range =
            JobEnv::from_lookup(lookup(&[("MPR_RANK", "4"), ("MPR_SIZE", "4")])).unwrap_err();
        assert!(
            out_of_range.to_string().contains("below MPR_SIZE"),
            "{out_of_range}"
        );
    }
}
