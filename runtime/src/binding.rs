//! Binding a rank to a core (`mprun --bind-to`, `MPR_BIND_TO`).
//!
//! A rank binds itself at [`crate::init`], before any thread of the
//! runtime starts (threads it starts later inherit the binding): local rank
//! `i` takes the `i`-th CPU of the set the job was started with. The
//! default is Open MPI's: bind to cores when the host has no more ranks
//! than CPUs, do not bind when it is oversubscribed.
//!
//! Asked for explicitly (`--bind-to core`), an oversubscribed host binds
//! too, round robin: local rank `i` takes CPU `i % CPUs`, so every CPU
//! runs the same number of ranks (Open MPI's `core:overload-allowed`).
//! Unbound, the scheduler often keeps an uneven split for a whole run,
//! and the crowded CPU sets the pace. Measured 2026-11-26 on 2 CPUs
//! (`taskset`, 4 runs each, alltoall of 4 B, µs): 4 ranks 1.59–1.70 with
//! 2 + 2 per CPU against 2.30–2.33 with 3 + 1; 8 ranks 4.30–4.81 with
//! 4 + 4, 7.72–8.57 with 5 + 3, 9.15–10.5 with 6 + 2. Unbound runs land on
//! either at random, which is most of the run-to-run swing of the
//! oversubscribed tables in `docs/`. It stays opt-in: the default is Open
//! MPI's, and a bound rank cannot move off a core its neighbours keep
//! busy, which uneven work (not these benchmarks) would need. Bound ranks
//! that share a core also cannot copy at the same time: a large bcast lost
//! to binding (4 ranks 128 KiB / 1 MiB, 7.66 / 103 µs unbound against 20.4
//! / 177 bound) until its root wrote into the rank of its own core
//! (`pushed_rank` in `collective/direct.rs`): 7.16 / 77.3 bound since. allreduce, alltoall and gather were within 3%
//! bound or unbound at every size.

use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};

/// What `MPR_BIND_TO` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BindTo {
    /// Cores when not oversubscribed (the default).
    Auto,
    /// One core per rank; round robin, several ranks to a core, when
    /// oversubscribed.
    Core,
    /// No binding.
    None,
}

impl BindTo {
    /// Parses `core`, `none` or `auto` (anything else is `Auto`, with a notice).
    pub(crate) fn parse(value: Option<&str>) -> BindTo {
        match value.map(str::trim) {
            None | Some("") | Some("auto") => BindTo::Auto,
            Some("core") | Some("cores") => BindTo::Core,
            Some("none") => BindTo::None,
            Some(other) => {
                eprintln!("mpr: MPR_BIND_TO={other} is not core, none or auto; using auto");
                BindTo::Auto
            }
        }
    }
}

/// What binding did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Bound {
    /// Bound to this CPU.
    Cpu(usize),
    /// Bound to this CPU, which other ranks of the host share (more ranks
    /// than CPUs, and `--bind-to core` asked for it).
    Shared(usize),
    /// Not bound, and why.
    Unbound(&'static str),
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bound::Cpu(cpu) => write!(f, "bound to CPU {cpu}"),
            Bound::Shared(cpu) => write!(
                f,
                "bound to CPU {cpu}, shared (more ranks than CPUs on this host)"
            ),
            Bound::Unbound(why) => write!(f, "not bound ({why})"),
        }
    }
}

/// Binds the calling thread (the rank's main thread, before it starts any
/// other) as `bind` asks, for local rank `local_rank` of `local_size`.
pub(crate) fn bind(bind: BindTo, local_rank: u32, local_size: u32) -> Bound {
    if bind == BindTo::None {
        return Bound::Unbound("--bind-to none");
    }
    let Ok(allowed) = sched_getaffinity(None) else {
        return Bound::Unbound("the CPU set is unreadable");
    };
    let cpus: Vec<usize> = (0..CpuSet::MAX_CPU)
        .filter(|&cpu| allowed.is_set(cpu))
        .collect();
    let crowded = local_size as usize > cpus.len();
    if crowded && bind == BindTo::Auto {
        return Bound::Unbound("more ranks than CPUs on this host");
    }
    let cpu = match (crowded, cpus.len()) {
        (_, 0) => return Bound::Unbound("the CPU set is empty"),
        (true, len) => cpus[local_rank as usize % len],
        (false, _) => match cpus.get(local_rank as usize) {
            Some(&cpu) => cpu,
            None => return Bound::Unbound("local rank out of range"),
        },
    };
    let mut set = CpuSet::new();
    set.set(cpu);
    match sched_setaffinity(None, &set) {
        Ok(()) if crowded => Bound::Shared(cpu),
        Ok(()) => Bound::Cpu(cpu),
        Err(_) => Bound::Unbound("sched_setaffinity was refused"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_and_none_never_binds() {
        assert_eq!(BindTo::parse(None), BindTo::Auto);
        assert_eq!(BindTo::parse(Some("core")), BindTo::Core);
        assert_eq!(BindTo::parse(Some("none")), BindTo::None);
        assert_eq!(BindTo::parse(Some("socket")), BindTo::Auto);
        assert_eq!(bind(BindTo::None, 0, 1), Bound::Unbound("--bind-to none"));
    }

    #[test]
    fn oversubscribed_ranks_stay_unbound() {
        assert_eq!(
            bind(BindTo::Auto, 0, 100_000),
            Bound::Unbound("more ranks than CPUs on this host")
        );
    }

    #[test]
    fn asked_to_an_oversubscribed_host_ranks_share_cpus_round_robin() {
        // In a thread of its own, so the test harness keeps its CPUs.
        std::thread::spawn(|| {
            let allowed = sched_getaffinity(None).unwrap();
            let cpus: Vec<usize> = (0..CpuSet::MAX_CPU)
                .filter(|&cpu| allowed.is_set(cpu))
                .collect();
            let size = 2 * cpus.len() as u32 + 1;
            let last = cpus.len() as u32 + 1;
            let cpu = cpus[1 % cpus.len()];
            assert_eq!(bind(BindTo::Core, last, size), Bound::Shared(cpu));
            let now = sched_getaffinity(None).unwrap();
            assert!(now.count() == 1 && now.is_set(cpu));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_thread_binds_to_the_cpu_of_its_local_rank() {
        // In a thread of its own, so the test harness keeps its CPUs.
        std::thread::spawn(|| {
            let allowed = sched_getaffinity(None).unwrap();
            let first = (0..CpuSet::MAX_CPU).find(|&c| allowed.is_set(c)).unwrap();
            assert_eq!(bind(BindTo::Core, 0, 1), Bound::Cpu(first));
            let now = sched_getaffinity(None).unwrap();
            assert_eq!(now.count(), 1);
            assert!(now.is_set(first));
        })
        .join()
        .unwrap();
    }
}
