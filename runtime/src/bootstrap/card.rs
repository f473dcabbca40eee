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
            }),
        };
        assert_eq!(Card::decode(&card.encode()).unwrap(), card);
        assert!(Card::decode(&[0xff, 0xff, 0xff]).is_err());
    }
}
