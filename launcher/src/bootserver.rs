//! The bootstrap server's logic, free of I/O: registration, fences,
//! finalize and abort, per connection.
//!
//! The supervisor feeds it bytes per connection and performs the
//! [`Action`]s it returns. A connection that sends anything malformed,
//! oversized or unauthenticated is closed; nothing else is affected.

use std::collections::HashMap;

use mpr::bootstrap::wire::{FrameReader, MAX_CLIENT_FRAME, Message};

/// Identifies one accepted connection (the supervisor's poll token).
pub(crate) type ConnId = usize;

/// What the supervisor must do after feeding the server.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Write these bytes to the connection.
    Send(ConnId, Vec<u8>),
    /// Close the connection; the reason is for diagnostics.
    Close(ConnId, String),
    /// Something the supervisor must know about a rank.
    Report(Report),
    /// Relay mode: every rank served here reached fence `epoch`; pass
    /// their cards up and call [`BootServer::deliver_fence`] with the answer.
    FenceBatch {
        /// Fence number.
        epoch: u32,
        /// `(world rank, card)` of every rank served here.
        cards: Vec<(u32, Vec<u8>)>,
    },
}

/// Rank events the supervision rules depend on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Report {
    /// The rank registered (it called `init`).
    Initialized(u32),
    /// The rank finalized: its exit is no longer a failure.
    Finalized(u32),
    /// The rank asked to abort the job.
    Aborted {
        /// Which rank.
        rank: u32,
        /// Requested exit code.
        code: i32,
        /// Its message.
        message: String,
    },
}

/// One accepted connection.
#[derive(Debug)]
struct Conn {
    reader: FrameReader,
    rank: Option<u32>,
}

/// Registration state of one rank.
#[derive(Debug, Default, Clone)]
struct RankSlot {
    conn: Option<ConnId>,
    finalized: bool,
}

/// The bootstrap server state for one job.
#[derive(Debug)]
pub(crate) struct BootServer {
    secret: Vec<u8>,
    ranks: Vec<RankSlot>,
    conns: HashMap<ConnId, Conn>,
    /// Cards of the fence in progress, by rank, and its epoch.
    fence_epoch: u32,
    fence_cards: Vec<Option<Vec<u8>>>,
    fence_arrived: usize,
    /// Which world ranks register here (all of them, unless relaying).
    served: Vec<bool>,
    /// Number of ranks served here.
    expected: usize,
    /// Relay mode (a per-host daemon): fences complete upstream.
    relay: bool,
    /// Relay mode: this fence's batch went up, its answer has not come.
    batch_sent: bool,
}

impl BootServer {
    /// A server for `size` ranks proving `secret`.
    pub(crate) fn new(size: u32, secret: Vec<u8>) -> Self {
        BootServer {
            secret,
            ranks: vec![RankSlot::default(); size as usize],
            conns: HashMap::new(),
            fence_epoch: 0,
            fence_cards: vec![None; size as usize],
            fence_arrived: 0,
            served: vec![true; size as usize],
            expected: size as usize,
            relay: false,
            batch_sent: false,
        }
    }

    /// A relaying server (a per-host daemon's) for the world ranks `local`
    /// of a job of `size` ranks: a fence yields one [`Action::FenceBatch`]
    /// once every rank served here reached it.
    pub(crate) fn relay(size: u32, secret: Vec<u8>, local: &[u32]) -> Self {
        let mut server = BootServer::new(size, secret);
        server.served = vec![false; size as usize];
        for &rank in local {
            if let Some(slot) = server.served.get_mut(rank as usize) {
                *slot = true;
            }
        }
        server.expected = server.served.iter().filter(|&&s| s).count();
        server.relay = true;
        server
    }

    /// Relay mode: the whole job reached fence `epoch`; hands every card to
    /// the ranks served here. False (and nothing sent) if `epoch` is not
    /// the fence in progress.
    pub(crate) fn deliver_fence(
        &mut self,
        epoch: u32,
        cards: Vec<Vec<u8>>,
        actions: &mut Vec<Action>,
    ) -> bool {
        if !self.batch_sent || epoch != self.fence_epoch || cards.len() != self.ranks.len() {
            return false;
        }
        let done = Message::FenceDone { epoch, cards }.encode();
        for conn in self.rank_conns() {
            actions.push(Action::Send(conn, done.clone()));
        }
        self.fence_epoch += 1;
        self.fence_arrived = 0;
        self.batch_sent = false;
        true
    }

    /// A new connection was accepted.
    pub(crate) fn on_connect(&mut self, conn: ConnId) {
        self.conns.insert(
            conn,
            Conn {
                reader: FrameReader::new(MAX_CLIENT_FRAME),
                rank: None,
            },
        );
    }

    /// A connection closed (or was closed): forget it.
    pub(crate) fn on_close(&mut self, conn: ConnId) {
        if let Some(Conn {
            rank: Some(rank), ..
        }) = self.conns.remove(&conn)
        {
            if let Some(slot) = self.ranks.get_mut(rank as usize) {
                slot.conn = None;
            }
        }
    }

    /// Number of connections that have not proven the secret yet.
    pub(crate) fn unauthenticated(&self) -> usize {
        self.conns
            .values()
            .filter(|conn| conn.rank.is_none())
            .count()
    }

    /// The longest-waiting connection that has not proven the secret yet
    /// (connection ids grow with time).
    pub(crate) fn oldest_unauthenticated(&self) -> Option<ConnId> {
        self.conns
            .iter()
            .filter(|(_, conn)| conn.rank.is_none())
            .map(|(id, _)| *id)
            .min()
    }

    /// Whether some rank waits at a fence that `rank` has not reached.
    pub(crate) fn fence_waits_for(&self, rank: u32) -> bool {
        // Once a relay's batch went up, every rank served here arrived.
        !self.batch_sent
            && self.fence_arrived > 0
            && self
                .fence_cards
                .get(rank as usize)
                .is_some_and(Option::is_none)
    }

    /// Whether `rank` has finalized.
    pub(crate) fn finalized(&self, rank: u32) -> bool {
        self.ranks
            .get(rank as usize)
            .is_some_and(|slot| slot.finalized)
    }

    /// Connections of registered ranks, to tell them about a failed peer.
    pub(crate) fn rank_conns(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.ranks.iter().filter_map(|slot| slot.conn)
    }

    /// Bytes arrived on `conn`.
    pub(crate) fn on_bytes(&mut self, conn: ConnId, bytes: &[u8], actions: &mut Vec<Action>) {
        let Some(state) = self.conns.get_mut(&conn) else {
            return;
        };
        state.reader.push(bytes);
        loop {
            let Some(state) = self.conns.get_mut(&conn) else {
                return;
            };
            let message = match state.reader.next_message() {
                Ok(Some(message)) => message,
                Ok(None) => return,
                Err(error) => {
                    return self.close(
                        conn,
                        format!("invalid bootstrap message: {error}"),
                        actions,
                    );
                }
            };
            let rank = state.rank;
            match rank {
                None => self.on_hello(conn, message, actions),
                Some(rank) => self.on_rank_message(conn, rank, message, actions),
            }
        }
    }

    fn close(&mut self, conn: ConnId, reason: String, actions: &mut Vec<Action>) {
        self.on_close(conn);
        actions.push(Action::Close(conn, reason));
    }

    fn on_hello(&mut self, conn: ConnId, message: Message, actions: &mut Vec<Action>) {
        let Message::Hello { rank, secret } = message else {
            return self.close(conn, "first message is not a hello".into(), actions);
        };
        if !constant_time_eq(&secret, &self.secret) {
            return self.close(conn, "wrong job secret".into(), actions);
        }
        if !self.served.get(rank as usize).copied().unwrap_or(false) {
            return self.close(conn, format!("rank {rank} is out of range"), actions);
        }
        let Some(slot) = self.ranks.get_mut(rank as usize) else {
            return self.close(conn, format!("rank {rank} is out of range"), actions);
        };
        if slot.conn.is_some() || slot.finalized {
            return self.close(conn, format!("rank {rank} registered twice"), actions);
        }
        slot.conn = Some(conn);
        if let Some(state) = self.conns.get_mut(&conn) {
            state.rank = Some(rank);
        }
        actions.push(Action::Report(Report::Initialized(rank)));
    }

    fn on_rank_message(
        &mut self,
        conn: ConnId,
        rank: u32,
        message: Message,
        actions: &mut Vec<Action>,
    ) {
        match message {
            Message::Fence { epoch, card } => {
                if epoch != self.fence_epoch
                    || self.fence_cards[rank as usize].is_some()
                    || self.batch_sent
                {
                    return self.close(
                        conn,
                        format!("rank {rank} sent fence {epoch} out of turn"),
                        actions,
                    );
                }
                self.fence_cards[rank as usize] = Some(card);
                self.fence_arrived += 1;
                if self.fence_arrived == self.expected {
                    self.complete_fence(actions);
                }
            }
            Message::Finalize => {
                self.ranks[rank as usize].finalized = true;
                actions.push(Action::Send(conn, Message::FinalizeAck.encode()));
                actions.push(Action::Report(Report::Finalized(rank)));
            }
            Message::Abort { code, message } => {
                actions.push(Action::Report(Report::Aborted {
                    rank,
                    code,
                    message,
                }));
            }
            other => self.close(
                conn,
                format!("rank {rank} sent an unexpected {other:?}"),
                actions,
            ),
        }
    }

    fn complete_fence(&mut self, actions: &mut Vec<Action>) {
        if self.relay {
            let cards = self
                .fence_cards
                .iter_mut()
                .enumerate()
                .filter_map(|(rank, card)| Some((rank as u32, card.take()?)))
                .collect();
            self.batch_sent = true;
            actions.push(Action::FenceBatch {
                epoch: self.fence_epoch,
                cards,
            });
            return;
        }
        let cards: Vec<Vec<u8>> = self
            .fence_cards
            .iter_mut()
            .map(|card| card.take().unwrap_or_default())
            .collect();
        let done = Message::FenceDone {
            epoch: self.fence_epoch,
            cards,
        }
        .encode();
        for conn in self.rank_conns() {
            actions.push(Action::Send(conn, done.clone()));
        }
        self.fence_epoch += 1;
        self.fence_arrived = 0;
    }
}

/// Compares secrets without revealing, by timing, how long a prefix matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(rank: u32, secret: &[u8]) -> Vec<u8> {
        Message::Hello {
            rank,
            secret: secret.to_vec(),
        }
        .encode()
    }

    #[test]
    fn two_ranks_register_fence_and_finalize() {
        let mut server = BootServer::new(2, b"s".to_vec());
        let mut actions = Vec::new();
        for conn in [10, 11] {
            server.on_connect(conn);
            server.on_bytes(conn, &hello(conn as u32 - 10, b"s"), &mut actions);
        }
        assert_eq!(
            std::mem::take(&mut actions),
            [
                Action::Report(Report::Initialized(0)),
                Action::Report(Report::Initialized(1))
            ]
        );
        server.on_bytes(
            10,
            &Message::Fence {
                epoch: 0,
                card: vec![1],
            }
            .encode(),
            &mut actions,
        );
        assert!(actions.is_empty());
        assert!(server.fence_waits_for(1) && !server.fence_waits_for(0));
        server.on_bytes(
            11,
            &Message::Fence {
                epoch: 0,
                card: vec![2],
            }
            .encode(),
            &mut actions,
        );
        let done = Message::FenceDone {
            epoch: 0,
            cards: vec![vec![1], vec![2]],
        }
        .encode();
        assert_eq!(actions.len(), 2);
        assert!(
            actions
                .iter()
                .all(|action| matches!(action, Action::Send(_, bytes) if *bytes == done))
        );
        actions.clear();
        server.on_bytes(11, &Message::Finalize.encode(), &mut actions);
        assert_eq!(
            actions,
            [
                Action::Send(11, Message::FinalizeAck.encode()),
                Action::Report(Report::Finalized(1))
            ]
        );
        assert!(server.finalized(1) && !server.finalized(0));
    }

    #[test]
    fn wrong_secret_garbage_and_duplicates_close_only_that_connection() {
        let mut server = BootServer::new(2, b"secret".to_vec());
        let mut actions = Vec::new();
        server.on_connect(1);
        server.on_bytes(1, &hello(0, b"wrong!"), &mut actions);
        assert!(matches!(&actions[..], [Action::Close(1, reason)] if reason.contains("secret")));
        actions.clear();
        server.on_connect(2);
        server.on_bytes(2, b"GET / HTTP/1.1\r\n\r\n", &mut actions);
        assert!(matches!(&actions[..], [Action::Close(2, _)]));
        actions.clear();
        server.on_connect(3);
        server.on_bytes(3, &hello(0, b"secret"), &mut actions);
        server.on_connect(4);
        server.on_bytes(4, &hello(0, b"secret"), &mut actions);
        assert_eq!(actions[0], Action::Report(Report::Initialized(0)));
        assert!(matches!(&actions[1], Action::Close(4, reason) if reason.contains("twice")));
        actions.clear();
        server.on_connect(5);
        server.on_bytes(5, &hello(9, b"secret"), &mut actions);
        assert!(
            matches!(&actions[..], [Action::Close(5, reason)] if reason.contains("out of range"))
        );
        assert_eq!(server.unauthenticated(), 0);
        assert_eq!(server.oldest_unauthenticated(), None);
        server.on_connect(9);
        server.on_connect(7);
        assert_eq!(server.oldest_unauthenticated(), Some(7));
        assert_eq!(server.rank_conns().collect::<Vec<_>>(), [3]);
    }

    #[test]
    fn a_relay_batches_its_ranks_cards_and_delivers_the_answer() {
        let mut server = BootServer::relay(4, b"s".to_vec(), &[1, 3]);
        let mut actions = Vec::new();
        server.on_connect(7);
        server.on_bytes(7, &hello(0, b"s"), &mut actions);
        assert!(matches!(&actions[..], [Action::Close(7, reason)] if reason.contains("range")));
        actions.clear();
        for (conn, rank) in [(10, 1), (11, 3)] {
            server.on_connect(conn);
            server.on_bytes(conn, &hello(rank, b"s"), &mut actions);
        }
        actions.clear();
        let fence = |card: u8| {
            Message::Fence {
                epoch: 0,
                card: vec![card],
            }
            .encode()
        };
        server.on_bytes(11, &fence(3), &mut actions);
        assert!(actions.is_empty() && server.fence_waits_for(1));
        assert!(!server.deliver_fence(0, vec![vec![]; 4], &mut actions));
        server.on_bytes(10, &fence(1), &mut actions);
        assert_eq!(
            std::mem::take(&mut actions),
            [Action::FenceBatch {
                epoch: 0,
                cards: vec![(1, vec![1]), (3, vec![3])]
            }]
        );
        assert!(!server.fence_waits_for(1) && !server.fence_waits_for(3));
        server.on_bytes(10, &fence(1), &mut actions);
        assert!(matches!(&actions[..], [Action::Close(10, _)]));
        actions.clear();
        let all = vec![vec![0], vec![1], vec![2], vec![3]];
        assert!(!server.deliver_fence(1, all.clone(), &mut actions));
        assert!(server.deliver_fence(0, all.clone(), &mut actions));
        let done = Message::FenceDone {
            epoch: 0,
            cards: all,
        }
        .encode();
        assert_eq!(actions, [Action::Send(11, done)]);
    }

    #[test]
    fn oversized_frame_closes_the_connection() {
        let mut server = BootServer::new(1, b"s".to_vec());
        let mut actions = Vec::new();
        server.on_connect(1);
        server.on_bytes(1, &u32::MAX.to_le_bytes(), &mut actions);
        assert!(matches!(&actions[..], [Action::Close(1, reason)] if reason.contains("exceeds")));
    }

    #[test]
    fn abort_is_reported_with_code_and_message() {
        let mut server = BootServer::new(1, b"s".to_vec());
        let mut actions = Vec::new();
        server.on_connect(1);
        server.on_bytes(1, &hello(0, b"s"), &mut actions);
        actions.clear();
        let abort = Message::Abort {
            code: 3,
            message: "bad input".into(),
        };
        server.on_bytes(1, &abort.encode(), &mut actions);
        assert_eq!(
            actions,
            [Action::Report(Report::Aborted {
                rank: 0,
                code: 3,
                message: "bad input".into()
            })]
        );
    }
}
