//! A rank that misbehaves on purpose, for `mprun`'s integration tests.
//!
//! `misbehave MODE [RANK]`: rank `RANK` (default 1) does `MODE`, the others
//! initialize and finalize normally.
//! - `panic`: panics with a recognizable message after init;
//! - `no-finalize`: initializes, then exits 0 without finalizing;
//! - `abort`: calls `Universe::abort(7, ...)`;
//! - `garbage`: (every rank) before init, opens raw connections to the
//!   bootstrap port and sends garbage and a wrong secret, and leaves 100
//!   silent connections open, then runs normally;
//! - `no-init`: exits 0 without ever calling init (the others wait at the fence);
//! - `truncate`: rank 0 sends 100 bytes that rank 1 receives into 10; with
//!   the default error policy the job aborts.

use std::io::Write;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let target: u32 = args.next().and_then(|r| r.parse().ok()).unwrap_or(1);
    let rank: u32 = std::env::var("MPR_RANK")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let chosen = rank == target;
    if mode == "garbage" {
        send_garbage();
    }
    if mode == "no-init" && chosen {
        return;
    }
    let universe = match mpr::init() {
        Ok(universe) => universe,
        Err(error) => {
            eprintln!("init failed: {error}");
            std::process::exit(9);
        }
    };
    match mode.as_str() {
        "panic" if chosen => panic!("deliberate panic in rank {rank}"),
        "no-finalize" if chosen => {
            std::mem::forget(universe);
            std::process::exit(0);
        }
        "abort" if chosen => universe.abort(7, "deliberate abort"),
        "truncate" => {
            let world = universe.world();
            if rank == 0 {
                world.send(&[0u8; 100], 1, 0).expect("send succeeds");
            } else if rank == 1 {
                let mut small = [0u8; 10];
                // Errors are fatal by default: this call aborts the job.
                let result = world.recv(&mut small, 0, 0);
                println!("rank 1 got {result:?}");
            }
        }
        _ => println!("rank {rank} done"),
    }
}

/// Connects to the bootstrap port a few times with bytes that are not a
/// valid registration.
fn send_garbage() {
    let Ok(addr) = std::env::var("MPR_BOOTSTRAP") else {
        return;
    };
    let attempts: [&[u8]; 3] = [
        b"GET / HTTP/1.0\r\n\r\n",
        &[0xff, 0xff, 0xff, 0x7f, 1, 1],
        // A well-formed hello with the wrong secret.
        &[
            14, 0, 0, 0, 1, 1, 0, 0, 0, 0, 4, 0, 0, 0, b'n', b'o', b'p', b'e',
        ],
    ];
    for bytes in attempts {
        if let Ok(mut stream) = std::net::TcpStream::connect(&addr) {
            let _ = stream.write_all(bytes);
        }
    }
    // Many connections that say nothing and stay open.
    let mut silent = Vec::new();
    for _ in 0..100 {
        if let Ok(stream) = std::net::TcpStream::connect(&addr) {
            silent.push(stream);
        }
    }
    std::mem::forget(silent);
}
