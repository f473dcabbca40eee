//! Binding a rank to a core (`mprun --bind-to`, `MPR_BIND_TO`).
//!
//! A rank binds itself at [`crate::init`], before any thread of the
//! runtime starts (threads it starts later inherit the binding): local rank
//! `i` takes the `i`-th CPU of the set the job was started with. The
//! default is Open MPI's: bind to cores when the host has no more ranks
//! than CPUs, do not bind when it is oversubscribed (a bound, spinning
//! rank would then keep its core from the rank it waits for).

use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};

/// What `MPR_BIND_TO` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BindTo {
    /// Cores when not oversubscribed (the default).
    Auto,
    /// One core per rank (refused, with a notice, when oversubscribed).
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
    /// Not bound, and why.
    Unbound(&'static str),
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bound::Cpu(cpu) => write!(f, "bound to CPU {cpu}"),
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
    if local_size as usize > cpus.len() {
        return Bound::Unbound("more ranks than CPUs on this host");
    }
    let Some(&cpu) = cpus.get(local_rank as usize) else {
        return Bound::Unbound("local rank out of range");
    };
    let mut set = CpuSet::new();
    set.set(cpu);
    match sched_setaffinity(None, &set) {
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
