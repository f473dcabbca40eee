//! `mpr-bench`: OSU-style micro-benchmarks for mpr (grows with the suite).

fn main() {
    eprintln!("mpr-bench: no benchmark is available yet");
    std::process::exit(2);
}
