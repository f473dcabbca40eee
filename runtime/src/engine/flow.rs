//! Per-peer credit accounting, both directions of one link.
//!
//! Credit is counted in bytes. Every EAGER costs `FRAME_COST + len`, every
//! RTS `FRAME_COST`; nothing else costs credit (CTS, DATA, ACK, CREDIT and
//! GOODBYE are bounded by the messages already credited, and DATA lands in a
//! posted user buffer).
//!
//! * Sender side: `available` starts at the window; a message is sent eager
//!   if it is small enough and its eager cost fits, as RTS if only that fits,
//!   and otherwise waits (see [`Protocol`]). CREDIT frames add back.
//! * Receiver side: `in_use` counts credit the peer has spent and not yet got
//!   back; exceeding the window is a protocol error. When a message is
//!   matched its cost becomes `owed`; once `owed` reaches a quarter of the
//!   window it is returned in one CREDIT frame (batching).
//!
//! Since unmatched messages hold their credit, the bytes a receiver buffers
//! for unexpected messages from one peer never exceed the window.

/// Credit cost of a frame on top of its payload (header plus bookkeeping).
pub(super) const FRAME_COST: usize = 64;

/// How to send the message at the head of a peer's send queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    /// Copy it into an EAGER frame.
    Eager,
    /// Announce it with an RTS.
    Rendezvous,
    /// Not even an RTS fits: wait for CREDIT.
    Wait,
}

/// Credit state of one link; see the module doc.
#[derive(Debug)]
pub(super) struct Credit {
    window: usize,
    available: usize,
    in_use: usize,
    owed: usize,
}

impl Credit {
    /// Fresh state for a link with this window.
    pub(super) fn new(window: usize) -> Credit {
        Credit {
            window,
            available: window,
            in_use: 0,
            owed: 0,
        }
    }

    /// Credit this side may still spend.
    #[cfg(test)]
    pub(super) fn available(&self) -> usize {
        self.available
    }

    /// Picks the protocol for a `len`-byte message and spends its credit.
    pub(super) fn spend(&mut self, len: usize, eager_limit: usize) -> Protocol {
        if len <= eager_limit && FRAME_COST + len <= self.available {
            self.available -= FRAME_COST + len;
            Protocol::Eager
        } else if FRAME_COST <= self.available {
            self.available -= FRAME_COST;
            Protocol::Rendezvous
        } else {
            Protocol::Wait
        }
    }

    /// Spends eager credit if it fits (for self-sends, which never use RTS).
    pub(super) fn try_spend_eager(&mut self, len: usize, eager_limit: usize) -> bool {
        let fits = len <= eager_limit && FRAME_COST + len <= self.available;
        if fits {
            self.available -= FRAME_COST + len;
        }
        fits
    }

    /// A CREDIT frame returned `amount`; `Err` if that is more than was spent.
    pub(super) fn refill(&mut self, amount: u64) -> Result<(), ()> {
        let spent = (self.window - self.available) as u64;
        if amount > spent {
            return Err(());
        }
        self.available += amount as usize;
        Ok(())
    }

    /// Gives back credit without a frame (self-sends).
    pub(super) fn refill_local(&mut self, amount: usize) {
        self.available = (self.available + amount).min(self.window);
    }

    /// The peer spent `cost` on a frame; `Err(in_use)` if over the window.
    pub(super) fn charge(&mut self, cost: usize) -> Result<(), u64> {
        let in_use = self.in_use as u64 + cost as u64;
        if in_use > self.window as u64 {
            return Err(in_use);
        }
        self.in_use += cost;
        Ok(())
    }

    /// A message costing `cost` was matched; returns the amount to send in
    /// a CREDIT frame now, if the batch is full.
    pub(super) fn release(&mut self, cost: usize) -> Option<u64> {
        self.owed += cost;
        if self.owed > 0 && self.owed >= self.window / 4 {
            let amount = self.owed.min(self.in_use);
            self.in_use -= amount;
            self.owed = 0;
            Some(amount as u64)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_falls_back_then_waits() {
        let mut c = Credit::new(1000);
        assert_eq!(c.spend(500, 600), Protocol::Eager);
        assert_eq!(c.available(), 436);
        assert_eq!(
            c.spend(700, 600),
            Protocol::Rendezvous,
            "over the eager limit"
        );
        assert_eq!(
            c.spend(400, 600),
            Protocol::Rendezvous,
            "eager cost does not fit"
        );
        assert_eq!(c.available(), 308);
        for _ in 0..4 {
            assert_eq!(c.spend(1000, 10), Protocol::Rendezvous);
        }
        assert_eq!(c.spend(0, 10), Protocol::Wait);
        assert_eq!(c.refill(1000), Err(()), "more than was spent");
        assert_eq!(c.refill(692), Ok(()));
        assert_eq!(c.available(), 744);
    }

    #[test]
    fn receiver_bounds_and_batches() {
        let mut c = Credit::new(1000);
        assert_eq!(c.charge(600), Ok(()));
        assert_eq!(c.charge(400), Ok(()));
        assert_eq!(c.charge(1), Err(1001));
        assert_eq!(c.release(200), None);
        assert_eq!(c.release(64), Some(264));
        assert_eq!(c.charge(264), Ok(()));
        assert_eq!(c.charge(1), Err(1001));
    }
}
