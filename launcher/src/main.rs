//! `mprun`: launch an SPMD job of N ranked processes and supervise it.
//!
//! See `mprun --help` and the README for usage; DESIGN §3 for the contract
//! between `mprun` and its ranks.
//!
//! Two ways to run a job: every rank on this machine, as children of
//! `mprun` (`supervisor`, the fast path), or across hosts (`cluster`), one
//! per-host daemon each (`daemon`, `daemon_loop`: this same binary started
//! with a hidden first argument by a launch agent, `agent`, `agents`),
//! talking to `mprun` over the control protocol (`control`, `fence`,
//! `stdin`). Both apply the same supervision rules (`rules`).

mod agent;
mod agents;
mod bootport;
mod bootserver;
mod cli;
mod cluster;
mod control;
mod daemon;
mod daemon_loop;
mod fence;
mod hostfile;
mod hosts;
mod job;
mod output;
mod placement;
mod rules;
mod slurm;
mod spawn;
mod stdin;
mod supervisor;

use clap::Parser;

fn main() {
    if std::env::args().nth(1).as_deref() == Some(spawn::GUARD_ARG) {
        spawn::guard_main();
    }
    if std::env::args().nth(1).as_deref() == Some(daemon::DAEMON_ARG) {
        let args: Vec<String> = std::env::args().skip(2).collect();
        daemon::daemon_main(&args);
    }
    let args = cli::Args::parse_from(cli::normalize(std::env::args()));
    let job = match job::prepare(&args) {
        Ok(job) => job,
        Err(error) => {
            eprintln!("mprun: {error}");
            std::process::exit(2);
        }
    };
    let result = match job.mode {
        job::Mode::Local(ranks) => supervisor::run(job.listener, job.secret, ranks, job.options),
        job::Mode::Cluster(plan) => cluster::run(job.listener, job.secret, plan, job.options),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            eprintln!("mprun: supervision failed: {error}");
            std::process::exit(1);
        }
    }
}
