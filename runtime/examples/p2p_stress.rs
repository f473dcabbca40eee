//! Point-to-point stress programs for the tests that run under `mprun`.
//!
//! `p2p_stress MODE [ARG]`:
//! - `big BYTES`: ranks 0 and 1 swap one message of BYTES bytes each way
//!   (default 1 GiB) and check every byte;
//! - `flood COUNT`: every rank but 0 sends its share of COUNT small messages
//!   with pseudo-random tags; rank 0 receives them all with ANY_SOURCE /
//!   ANY_TAG and checks exactly-once delivery, per-sender order and tags;
//! - `garbage`: every rank first opens stray connections to every other
//!   rank's data port (garbage bytes, a wrong secret, silence), then runs a
//!   ring and a flood of 10 000 messages, which must be unaffected.

use std::io::Write;
use std::process::ExitCode;

use mpr::{ANY_SOURCE, ANY_TAG, Comm};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let arg: Option<u64> = args.next().and_then(|a| a.parse().ok());
    let universe = match mpr::init() {
        Ok(universe) => universe,
        Err(error) => {
            eprintln!("init: {error}");
            return ExitCode::FAILURE;
        }
    };
    let world = universe.world();
    let result = match mode.as_str() {
        "big" => big(world, arg.unwrap_or(1 << 30) as usize),
        "flood" => flood(world, arg.unwrap_or(100_000)),
        "garbage" => {
            stray_connections(&universe);
            ring(world).and_then(|()| flood(world, 10_000))
        }
        other => Err(format!("unknown mode {other:?}")),
    };
    match result {
        Ok(()) => {
            println!("rank {} ok", world.rank());
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("rank {}: {message}", world.rank());
            ExitCode::FAILURE
        }
    }
}

fn byte_at(i: usize, seed: usize) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13 ^ seed) as u8
}

fn big(world: &Comm, len: usize) -> Result<(), String> {
    let rank = world.rank() as usize;
    if rank > 1 {
        return Ok(());
    }
    let peer = 1 - rank as u32;
    let send: Vec<u8> = (0..len).map(|i| byte_at(i, rank)).collect();
    let mut recv = vec![0u8; len];
    let status = world
        .sendrecv(&send, peer, 3, &mut recv, peer, 3)
        .map_err(|e| e.to_string())?;
    if status.len != len {
        return Err(format!("got {} bytes, expected {len}", status.len));
    }
    if let Some(bad) = recv
        .iter()
        .enumerate()
        .position(|(i, &b)| b != byte_at(i, peer as usize))
    {
        return Err(format!("byte {bad} of the {len}-byte message is wrong"));
    }
    Ok(())
}

/// xorshift: the tag sequence of a sender, reproducible by the receiver.
fn next_tag(state: &mut u64) -> i32 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state % 1000) as i32
}

fn flood(world: &Comm, count: u64) -> Result<(), String> {
    let size = world.size() as u64;
    if size < 2 {
        return Ok(());
    }
    let senders = size - 1;
    let share = |sender: u64| count / senders + u64::from(sender <= count % senders);
    let rank = world.rank() as u64;
    if rank != 0 {
        let mut state = 0x9E37_79B9_7F4A_7C15 ^ rank;
        for seq in 0..share(rank) {
            let tag = next_tag(&mut state);
            world
                .send(&[rank, seq], 0, tag)
                .map_err(|e| e.to_string())?;
        }
        return Ok(());
    }
    let mut expected_seq = vec![0u64; size as usize];
    let mut tag_state: Vec<u64> = (0..size).map(|r| 0x9E37_79B9_7F4A_7C15 ^ r).collect();
    let total: u64 = (1..size).map(share).sum();
    for _ in 0..total {
        let mut msg = [0u64; 2];
        let status = world
            .recv(&mut msg, ANY_SOURCE, ANY_TAG)
            .map_err(|e| e.to_string())?;
        let sender = status.source.0 as u64;
        if msg[0] != sender {
            return Err(format!(
                "message claims sender {} but came from {sender}",
                msg[0]
            ));
        }
        if msg[1] != expected_seq[sender as usize] {
            return Err(format!(
                "from rank {sender}: got message {} where {} was due (lost, duplicated or reordered)",
                msg[1], expected_seq[sender as usize]
            ));
        }
        let tag = next_tag(&mut tag_state[sender as usize]);
        if status.tag.0 != tag {
            return Err(format!(
                "from rank {sender}: tag {} where {tag} was sent",
                status.tag
            ));
        }
        expected_seq[sender as usize] += 1;
    }
    if world
        .iprobe(ANY_SOURCE, ANY_TAG)
        .map_err(|e| e.to_string())?
        .is_some()
    {
        return Err("a message too many arrived".into());
    }
    for sender in 1..size {
        if expected_seq[sender as usize] != share(sender) {
            return Err(format!(
                "rank {sender}: {} of {} messages",
                expected_seq[sender as usize],
                share(sender)
            ));
        }
    }
    Ok(())
}

fn ring(world: &Comm) -> Result<(), String> {
    let (rank, size) = (world.rank(), world.size());
    let mut token = [0u32];
    if rank == 0 {
        world
            .send(&[1u32], (rank + 1) % size, 9)
            .map_err(|e| e.to_string())?;
        world
            .recv(&mut token, (rank + size - 1) % size, 9)
            .map_err(|e| e.to_string())?;
        if token[0] != size {
            return Err(format!("ring token {} != {size}", token[0]));
        }
    } else {
        world
            .recv(&mut token, rank - 1, 9)
            .map_err(|e| e.to_string())?;
        world
            .send(&[token[0] + 1], (rank + 1) % size, 9)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Opens connections to every other rank's data port that are not valid
/// mpr links, and leaves some of them open.
fn stray_connections(universe: &mpr::Universe) {
    let me = universe.world().rank();
    let mut keep = Vec::new();
    for rank in (0..universe.world().size()).filter(|&r| r != me) {
        for addr in universe.data_addresses(rank) {
            let attempts: [&[u8]; 3] = [
                b"\x00\x01garbage that is not a frame header at all......",
                // A HELLO header claiming rank 0 with a wrong 4-byte secret.
                &[
                    1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0,
                    0, 0, 0, 0, 0, 0, b'n', b'o', b'p', b'e',
                ],
                b"",
            ];
            for bytes in attempts {
                if let Ok(mut stream) = std::net::TcpStream::connect(addr) {
                    let _ = stream.write_all(bytes);
                    keep.push(stream);
                }
            }
        }
    }
    // The silent ones stay open for the rest of the run.
    std::mem::forget(keep);
}
