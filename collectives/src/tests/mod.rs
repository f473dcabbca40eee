//! Test harness: a schedule checker (matching and deadlock freedom, no data)
//! and an in-memory world of threads implementing [`Channel`].

mod algorithms;
mod streamed;

use std::collections::{HashMap, VecDeque};
use std::sync::{Condvar, Mutex};

use bytemuck::Pod;

use crate::exec::{Channel, Incoming, Outgoing, execute};
use crate::op::Op;
use crate::schedule::Schedule;

/// Checks that every send of a step marked `expected` is received in the
/// receiver's first step with messages, and is the first message of its
/// source and tag there (so no earlier one of the same envelope matches
/// that receive).
fn check_expected(schedules: &[Schedule]) -> Result<(), String> {
    for (rank, schedule) in schedules.iter().enumerate() {
        let rank = rank as u32;
        let mut sent_before: HashMap<(u32, i32), usize> = HashMap::new();
        for step in &schedule.steps {
            for t in &step.sends {
                let earlier = sent_before.entry((t.peer, t.tag)).or_default();
                if step.expected {
                    let first = schedules
                        .get(t.peer as usize)
                        .and_then(|peer| peer.steps.iter().find(|step| step.communicates()));
                    let waits = first.is_some_and(|first| {
                        first.recvs.iter().any(|r| r.peer == rank && r.tag == t.tag)
                    });
                    if !waits || *earlier > 0 {
                        return Err(format!(
                            "rank {rank}: an expected send to {} (tag {}) is not received in its first step",
                            t.peer, t.tag
                        ));
                    }
                }
                *earlier += 1;
            }
        }
    }
    Ok(())
}

/// Checks a world of schedules: for every (sender, receiver, tag) both sides
/// list the same message lengths in the same order, and the world
/// completes even if every send waits for its receive. `Err` says why not.
pub(crate) fn check_world(schedules: &[Schedule]) -> Result<(), String> {
    let size = schedules.len() as u32;
    // Matching: k-th send == k-th receive per (src, dst, tag).
    let mut sent: HashMap<(u32, u32, i32), Vec<usize>> = HashMap::new();
    let mut received: HashMap<(u32, u32, i32), Vec<usize>> = HashMap::new();
    for (rank, schedule) in schedules.iter().enumerate() {
        let rank = rank as u32;
        for step in &schedule.steps {
            for t in &step.sends {
                if t.peer >= size {
                    return Err(format!("rank {rank} sends to {} of {size}", t.peer));
                }
                sent.entry((rank, t.peer, t.tag))
                    .or_default()
                    .push(t.region.len);
            }
            for t in &step.recvs {
                if t.peer >= size {
                    return Err(format!("rank {rank} receives from {} of {size}", t.peer));
                }
                received
                    .entry((t.peer, rank, t.tag))
                    .or_default()
                    .push(t.region.len);
            }
            for (i, a) in step.recvs.iter().enumerate() {
                for b in step.recvs.iter().skip(i + 1).chain(&step.sends) {
                    if a.region.overlaps(&b.region) {
                        return Err(format!(
                            "rank {rank}: a receive overlaps another message of its step"
                        ));
                    }
                }
            }
        }
    }
    check_expected(schedules)?;
    let keys: std::collections::BTreeSet<_> = sent.keys().chain(received.keys()).copied().collect();
    for key in keys {
        let (s, r) = (sent.get(&key), received.get(&key));
        if s != r {
            return Err(format!(
                "{key:?} (src, dst, tag): sends {s:?} but receives {r:?}"
            ));
        }
    }
    // Deadlock freedom under rendezvous: a step completes only once each of
    // its messages meets its partner in the partner's current step.
    let mut at = vec![0usize; schedules.len()];
    let mut matched: Vec<Vec<(Vec<bool>, Vec<bool>)>> = schedules
        .iter()
        .map(|s| {
            s.steps
                .iter()
                .map(|st| (vec![false; st.sends.len()], vec![false; st.recvs.len()]))
                .collect()
        })
        .collect();
    loop {
        let mut progress = false;
        for a in 0..schedules.len() {
            let Some(step) = schedules[a].steps.get(at[a]) else {
                continue;
            };
            for (i, t) in step.sends.iter().enumerate() {
                if matched[a][at[a]].0[i] {
                    continue;
                }
                let b = t.peer as usize;
                let Some(other) = schedules[b].steps.get(at[b]) else {
                    continue;
                };
                // First unmatched receive from `a` with this tag in b's step.
                let j = other.recvs.iter().enumerate().position(|(j, r)| {
                    r.peer as usize == a && r.tag == t.tag && !matched[b][at[b]].1[j]
                });
                // It must also be the first unmatched send from a to b with
                // this tag (in-order matching).
                let first = step.sends.iter().enumerate().position(|(k, s)| {
                    s.peer == t.peer && s.tag == t.tag && !matched[a][at[a]].0[k]
                });
                if let (Some(j), Some(first)) = (j, first) {
                    if first == i {
                        matched[a][at[a]].0[i] = true;
                        matched[b][at[b]].1[j] = true;
                        progress = true;
                    }
                }
            }
        }
        for a in 0..schedules.len() {
            if let Some(done) = matched[a].get(at[a]) {
                if done.0.iter().chain(&done.1).all(|&m| m) {
                    at[a] += 1;
                    progress = true;
                }
            }
        }
        if at.iter().zip(schedules).all(|(&at, s)| at >= s.steps.len()) {
            return Ok(());
        }
        if !progress {
            return Err(format!(
                "deadlock under rendezvous: ranks stuck at steps {at:?}"
            ));
        }
    }
}

/// A message in flight: source, tag, payload.
type Message = (u32, i32, Vec<u8>);

/// A world of ranks as threads exchanging through shared inboxes (eager).
#[derive(Debug)]
pub(crate) struct World {
    inboxes: Vec<(Mutex<VecDeque<Message>>, Condvar)>,
}

#[derive(Debug)]
pub(crate) struct Endpoint<'w> {
    world: &'w World,
    rank: u32,
}

/// What went wrong in the in-memory world.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SimError {
    /// A message did not fill its receive buffer exactly.
    Length {
        from: u32,
        expected: usize,
        actual: usize,
    },
}

impl World {
    pub(crate) fn new(size: u32) -> World {
        World {
            inboxes: (0..size)
                .map(|_| (Mutex::new(VecDeque::new()), Condvar::new()))
                .collect(),
        }
    }
}

/// Longest wait for one message of the in-memory world.
const RECV_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Whether `queue` holds a message from `peer` with `tag`.
fn queue_has(queue: &VecDeque<Message>, peer: u32, tag: i32) -> bool {
    queue.iter().any(|m| m.0 == peer && m.1 == tag)
}

impl Channel for Endpoint<'_> {
    type Error = SimError;

    fn rank(&self) -> u32 {
        self.rank
    }

    fn size(&self) -> u32 {
        self.world.inboxes.len() as u32
    }

    fn exchange(&self, sends: &[Outgoing<'_>], recvs: &mut [Incoming<'_>]) -> Result<(), SimError> {
        for send in sends {
            let (inbox, ready) = &self.world.inboxes[send.peer as usize];
            inbox
                .lock()
                .unwrap()
                .push_back((self.rank, send.tag, send.data.to_vec()));
            ready.notify_all();
        }
        let (inbox, ready) = &self.world.inboxes[self.rank as usize];
        let mut first_error = None;
        for recv in recvs.iter_mut() {
            let mut queue = inbox.lock().unwrap();
            let message = loop {
                if let Some(i) = queue
                    .iter()
                    .position(|m| m.0 == recv.peer && m.1 == recv.tag)
                {
                    break queue.remove(i).unwrap().2;
                }
                // A peer thread that panicked never sends: fail instead of
                // hanging the test run.
                let (next, waited) = ready.wait_timeout(queue, RECV_TIMEOUT).unwrap();
                assert!(
                    !waited.timed_out() || queue_has(&next, recv.peer, recv.tag),
                    "rank {} waited {RECV_TIMEOUT:?} for rank {} (tag {}): did its thread panic?",
                    self.rank,
                    recv.peer,
                    recv.tag
                );
                queue = next;
            };
            if message.len() == recv.data.len() {
                recv.data.copy_from_slice(&message);
            } else {
                first_error.get_or_insert(SimError::Length {
                    from: recv.peer,
                    expected: recv.data.len(),
                    actual: message.len(),
                });
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Checks the schedules, then runs them: rank `r` with `inputs[r]` and an
/// output of `outputs[r]` (its initial content). Returns the outputs and
/// each rank's result.
pub(crate) fn run_world<T: Pod + Send + Sync>(
    schedules: &[Schedule],
    inputs: &[Vec<T>],
    outputs: Vec<Vec<T>>,
    op: Option<&(dyn Op<T> + Sync)>,
) -> Vec<(Vec<T>, Result<(), SimError>)> {
    if let Err(why) = check_world(schedules) {
        panic!("schedule check failed: {why}");
    }
    let world = World::new(schedules.len() as u32);
    std::thread::scope(|scope| {
        let handles: Vec<_> = outputs
            .into_iter()
            .enumerate()
            .map(|(rank, mut output)| {
                let world = &world;
                let schedule = &schedules[rank];
                let input = &inputs[rank];
                scope.spawn(move || {
                    let endpoint = Endpoint {
                        world,
                        rank: rank as u32,
                    };
                    let op = op.map(|op| op as &dyn Op<T>);
                    let result = execute(&endpoint, schedule, input, &mut output, op);
                    (output, result)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a rank panicked"))
            .collect()
    })
}
