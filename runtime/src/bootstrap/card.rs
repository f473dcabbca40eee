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
        };
        assert_eq!(Card::decode(&card.encode()).unwrap(), card);
        assert!(Card::decode(&[0xff, 0xff, 0xff]).is_err());
    }
}
