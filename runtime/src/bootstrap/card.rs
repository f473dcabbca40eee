//! The business card a rank publishes at the bootstrap fence.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// What a rank tells every other rank about itself at wire-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Card {
    /// Host name of the rank's machine (ranks with equal names share a host).
    pub host: String,
    /// Process id, for messages that name a rank.
    pub pid: u32,
    /// Data-plane listen addresses, best first.
    pub addrs: Vec<SocketAddr>,
    /// Where local peers find this rank's shared-memory segment, if it
    /// offers one.
    pub shm: Option<SharedMemoryCard>,
}

/// The shared-memory part of a business card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedMemoryCard {
    /// Kernel and namespaces of the rank (boot id, network and pid
    /// namespaces): only ranks with equal domains can share memory.
    pub domain: String,
    /// The launcher's node index: ranks share memory only within a node.
    pub node: u32,
    /// This rank's slot in every segment of its node (its local rank).
    pub slot: u32,
    /// Slots in this rank's segment.
    pub slots: u32,
    /// Bytes of each ring in this rank's segment.
    pub capacity: u64,
    /// The segment's descriptor number, opened as `/proc/<pid>/fd/<fd>`.
    pub fd: i32,
    /// Abstract unix socket name of this rank's doorbell.
    pub doorbell: String,
    /// Address of a known word in this process: a peer that can read it
    /// with `process_vm_readv` may copy large messages straight from this
    /// rank's memory (single copy).
    pub probe: u64,
}

/// For each rank, a number shared by exactly the ranks whose cards offer
/// shared memory in the same domain and node; `None` for a rank that
/// offers none. Every rank computes the same list from the same cards.
pub(crate) fn memory_domains(cards: &[Card]) -> Vec<Option<u32>> {
    let mut seen: Vec<(&str, u32)> = Vec::new();
    cards
        .iter()
        .map(|card| {
            let shm = card.shm.as_ref()?;
            let key = (shm.domain.as_str(), shm.node);
            let index = seen.iter().position(|&k| k == key).unwrap_or_else(|| {
                seen.push(key);
                seen.len() - 1
            });
            Some(index as u32)
        })
        .collect()
}

impl Card {
    /// The card as bytes for the bootstrap fence.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Decodes a card received from the bootstrap fence.
    pub fn decode(bytes: &[u8]) -> Result<Card, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_round_trips_and_garbage_is_an_error() {
        let card = Card {
            host: "node1".into(),
            pid: 42,
            addrs: vec!["127.0.0.1:5000".parse().unwrap()],
            shm: Some(SharedMemoryCard {
                domain: "boot/net/pid".into(),
                node: 0,
                slot: 1,
                slots: 4,
                capacity: 1 << 18,
                fd: 5,
                doorbell: "mpr.1.2.3".into(),
                probe: 0x1000,
            }),
        };
        assert_eq!(Card::decode(&card.encode()).unwrap(), card);
        assert!(Card::decode(&[0xff, 0xff, 0xff]).is_err());
    }
}
