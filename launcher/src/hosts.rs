//! The hosts of a multi-host job and their lifecycle, free of I/O: which
//! daemons to launch next (at most `concurrency` waiting for their call-back
//! at once), which host a daemon's hello belongs to, which launches ran out
//! of time, and when every host is finished.

use std::ops::{Index, IndexMut};
use std::time::{Duration, Instant};

/// Where a host is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostState {
    /// Its agent is not started yet.
    Waiting,
    /// Its agent runs since then; its daemon has not called back.
    Launching(Instant),
    /// Its daemon is connected.
    Running,
    /// Its daemon said goodbye, or it was never started because the job stopped.
    Done,
    /// It was lost.
    Lost,
}

impl HostState {
    /// Done or lost: nothing more will happen on this host.
    pub(crate) fn finished(self) -> bool {
        matches!(self, HostState::Done | HostState::Lost)
    }
}

/// One host of the job.
#[derive(Debug)]
pub(crate) struct Host {
    /// Name as in the hostfile or allocation.
    pub(crate) name: String,
    /// Where it is in its life.
    pub(crate) state: HostState,
    /// Its daemon's control connection, once it called back.
    pub(crate) conn: Option<usize>,
    /// The agent that started its daemon.
    pub(crate) agent: Option<usize>,
    /// Its ranks.
    pub(crate) ranks: Vec<u32>,
}

/// Every host of the job, indexed as the plan lists them.
#[derive(Debug)]
pub(crate) struct Hosts {
    hosts: Vec<Host>,
    concurrency: usize,
}

impl Hosts {
    /// Hosts named `(name, ranks)`, waiting; at most `concurrency` (at
    /// least 1) launching at once.
    pub(crate) fn new(hosts: Vec<(String, Vec<u32>)>, concurrency: usize) -> Self {
        Hosts {
            hosts: hosts
                .into_iter()
                .map(|(name, ranks)| Host {
                    name,
                    state: HostState::Waiting,
                    conn: None,
                    agent: None,
                    ranks,
                })
                .collect(),
            concurrency: concurrency.max(1),
        }
    }

    /// Number of hosts.
    pub(crate) fn len(&self) -> usize {
        self.hosts.len()
    }

    /// The hosts in plan order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Host> {
        self.hosts.iter()
    }

    /// Waiting hosts whose daemon may be launched now, without exceeding
    /// the concurrency bound.
    pub(crate) fn to_launch(&self) -> Vec<usize> {
        let launching = self
            .hosts
            .iter()
            .filter(|host| matches!(host.state, HostState::Launching(_)))
            .count();
        let free = self.concurrency.saturating_sub(launching);
        (0..self.hosts.len())
            .filter(|&index| self.hosts[index].state == HostState::Waiting)
            .take(free)
            .collect()
    }

    /// Whether no host has been launched yet.
    pub(crate) fn none_launched(&self) -> bool {
        self.hosts
            .iter()
            .all(|host| host.state == HostState::Waiting)
    }

    /// `indices` are being launched by `agent` (if it started) since `now`.
    pub(crate) fn launching(&mut self, indices: &[usize], agent: Option<usize>, now: Instant) {
        for &index in indices {
            if let Some(host) = self.hosts.get_mut(index) {
                host.state = HostState::Launching(now);
                host.agent = agent;
            }
        }
    }

    /// The launching host a daemon's hello names (by index, or else by its
    /// node's name, full or short), now running on connection `conn`.
    pub(crate) fn claim(
        &mut self,
        index: Option<u32>,
        node_name: &str,
        conn: usize,
    ) -> Option<usize> {
        let waiting =
            |host: &Host| matches!(host.state, HostState::Launching(_)) && host.conn.is_none();
        let short = |name: &str| name.split('.').next().unwrap_or(name).to_owned();
        let found = match index {
            Some(index) => Some(index as usize).filter(|&i| self.hosts.get(i).is_some_and(waiting)),
            None => self.hosts.iter().position(|host| {
                waiting(host) && (host.name == node_name || short(&host.name) == short(node_name))
            }),
        }?;
        let host = &mut self.hosts[found];
        host.state = HostState::Running;
        host.conn = Some(conn);
        Some(found)
    }

    /// Hosts whose daemon has not called back within `limit` of its launch.
    pub(crate) fn launch_expired(&self, now: Instant, limit: Duration) -> Vec<usize> {
        (0..self.hosts.len())
            .filter(|&index| {
                matches!(self.hosts[index].state, HostState::Launching(since) if now >= since + limit)
            })
            .collect()
    }

    /// When the next launch runs out of time.
    pub(crate) fn next_launch_deadline(&self, limit: Duration) -> Option<Instant> {
        self.hosts
            .iter()
            .filter_map(|host| match host.state {
                HostState::Launching(since) => Some(since + limit),
                _ => None,
            })
            .min()
    }

    /// Launching hosts whose daemon `agent` was to start.
    pub(crate) fn launching_by(&self, agent: usize) -> Vec<usize> {
        (0..self.hosts.len())
            .filter(|&index| {
                let host = &self.hosts[index];
                host.agent == Some(agent) && matches!(host.state, HostState::Launching(_))
            })
            .collect()
    }

    /// The job stops: hosts not launched yet never will be.
    pub(crate) fn skip_waiting(&mut self) {
        for host in &mut self.hosts {
            if host.state == HostState::Waiting {
                host.state = HostState::Done;
            }
        }
    }

    /// Every host is done or lost.
    pub(crate) fn all_finished(&self) -> bool {
        self.hosts.iter().all(|host| host.state.finished())
    }
}

impl Index<usize> for Hosts {
    type Output = Host;

    fn index(&self, index: usize) -> &Host {
        &self.hosts[index]
    }
}

impl IndexMut<usize> for Hosts {
    fn index_mut(&mut self, index: usize) -> &mut Host {
        &mut self.hosts[index]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(n: usize, concurrency: usize) -> Hosts {
        Hosts::new(
            (0..n)
                .map(|i| (format!("node{i}.cluster"), vec![i as u32]))
                .collect(),
            concurrency,
        )
    }

    #[test]
    fn launches_never_exceed_the_concurrency_bound() {
        let now = Instant::now();
        let mut hosts = hosts(5, 2);
        assert!(hosts.none_launched());
        let first = hosts.to_launch();
        assert_eq!(first, [0, 1]);
        hosts.launching(&first, Some(0), now);
        assert!(hosts.to_launch().is_empty());
        assert_eq!(hosts.claim(Some(1), "", 7), Some(1));
        assert_eq!(hosts[1].conn, Some(7));
        assert_eq!(hosts.to_launch(), [2]);
        hosts.launching(&[2], Some(1), now);
        hosts[0].state = HostState::Lost;
        assert_eq!(hosts.to_launch(), [3]);
        assert_eq!(Hosts::new(vec![("a".into(), vec![])], 0).to_launch(), [0]);
    }

    #[test]
    fn a_hello_claims_a_launching_host_by_index_or_name_once() {
        let now = Instant::now();
        let mut hosts = hosts(3, 8);
        assert_eq!(hosts.claim(Some(0), "", 1), None, "not launched yet");
        hosts.launching(&[0, 1, 2], Some(0), now);
        assert_eq!(hosts.claim(Some(9), "", 1), None, "out of range");
        assert_eq!(hosts.claim(None, "node2", 2), Some(2), "short name");
        assert_eq!(
            hosts.claim(None, "node2.cluster", 3),
            None,
            "claimed already"
        );
        assert_eq!(hosts.claim(None, "node1.cluster", 4), Some(1));
        assert_eq!(hosts.claim(Some(1), "", 5), None);
        assert_eq!(hosts.launching_by(0), [0]);
        assert_eq!(hosts[2].state, HostState::Running);
    }

    #[test]
    fn slow_launches_expire_and_the_job_ends_when_every_host_is_finished() {
        let start = Instant::now();
        let limit = Duration::from_secs(60);
        let mut hosts = hosts(3, 1);
        hosts.launching(&[0], Some(0), start);
        assert_eq!(hosts.next_launch_deadline(limit), Some(start + limit));
        assert!(hosts.launch_expired(start + limit / 2, limit).is_empty());
        assert_eq!(hosts.launch_expired(start + limit, limit), [0]);
        hosts[0].state = HostState::Lost;
        assert!(!hosts.all_finished());
        hosts.skip_waiting();
        assert!(hosts.all_finished());
        assert_eq!(hosts.next_launch_deadline(limit), None);
    }
}
