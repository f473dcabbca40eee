//! Placement: which host each rank runs on, and its place among that host's ranks.
//!
//! Two policies, as in Open MPI's `--map-by`:
//!
//! - [`MapBy::Slot`] fills the slots of each host in hostfile order, so
//!   consecutive ranks share a host.
//! - [`MapBy::Node`] deals ranks round robin, one per host per round,
//!   skipping hosts whose slots are full.
//!
//! More ranks than slots is an error unless oversubscription is allowed. Then
//! the ranks beyond the slots are dealt round robin over the hosts, never
//! beyond a host's `max_slots`. With [`MapBy::Slot`] the ranks of each host
//! stay contiguous (host 0 gets its slots plus its extra share first), like
//! Open MPI's by-slot mapper.
//!
//! Placement is pure: no I/O, the same input always gives the same output.

use crate::hostfile::HostEntry;

/// The policy that maps ranks to hosts (`--map-by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum MapBy {
    /// Fill each host's slots in hostfile order before moving to the next host.
    #[default]
    Slot,
    /// One rank per host per round, round robin over the hosts with free slots.
    Node,
}

/// Where one rank runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RankPlacement {
    /// World rank.
    pub(crate) rank: u32,
    /// Name of the host the rank runs on.
    pub(crate) host: String,
    /// Index of the host among the hosts that got ranks, in hostfile order.
    pub(crate) node: u32,
    /// Index of the rank among the ranks of its host, in rank order.
    pub(crate) local_rank: u32,
    /// Number of ranks on the host.
    pub(crate) local_size: u32,
}

/// Where every rank runs; `ranks[r].rank == r`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placement {
    /// One entry per world rank, in rank order.
    pub(crate) ranks: Vec<RankPlacement>,
}

/// Why the ranks cannot be placed on the hosts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PlacementError {
    /// Ranks were requested but no host was given.
    #[error("{requested} ranks requested but no hosts are available")]
    NoHosts {
        /// Number of ranks requested.
        requested: u32,
    },
    /// More ranks than slots, and oversubscription was not allowed.
    #[error(
        "not enough slots: {requested} ranks requested but the hosts have {available} slots; \
         add slots to the hostfile or pass --oversubscribe"
    )]
    NotEnoughSlots {
        /// Number of ranks requested.
        requested: u32,
        /// Total slots of all hosts.
        available: u64,
    },
    /// More ranks than the hosts' `max_slots` allow, even oversubscribed.
    #[error(
        "{requested} ranks requested but the hosts' max_slots allow at most {available}, \
         even with --oversubscribe"
    )]
    ExceedsMaxSlots {
        /// Number of ranks requested.
        requested: u32,
        /// Total max_slots of all hosts.
        available: u64,
    },
}

/// Places `ranks` ranks on `hosts` with the `map_by` policy.
///
/// Fails if the ranks do not fit in the slots (unless `oversubscribe`) or in
/// the hosts' `max_slots`.
pub(crate) fn place(
    hosts: &[HostEntry],
    ranks: u32,
    map_by: MapBy,
    oversubscribe: bool,
) -> Result<Placement, PlacementError> {
    check_capacity(hosts, ranks, oversubscribe)?;
    let host_of_rank = match map_by {
        MapBy::Slot => map_by_slot(hosts, ranks),
        MapBy::Node => map_by_node(hosts, ranks),
    };
    Ok(describe_placement(hosts, &host_of_rank))
}

/// Checks that `requested` ranks fit on `hosts`.
fn check_capacity(
    hosts: &[HostEntry],
    requested: u32,
    oversubscribe: bool,
) -> Result<(), PlacementError> {
    if requested == 0 {
        return Ok(());
    }
    if hosts.is_empty() {
        return Err(PlacementError::NoHosts { requested });
    }
    let available: u64 = hosts.iter().map(|host| u64::from(host.slots)).sum();
    if u64::from(requested) <= available {
        return Ok(());
    }
    if !oversubscribe {
        return Err(PlacementError::NotEnoughSlots {
            requested,
            available,
        });
    }
    match total_hard_limit(hosts) {
        Some(limit) if u64::from(requested) > limit => Err(PlacementError::ExceedsMaxSlots {
            requested,
            available: limit,
        }),
        _ => Ok(()),
    }
}

/// Sum of the hosts' hard limits; `None` if any host has no limit.
fn total_hard_limit(hosts: &[HostEntry]) -> Option<u64> {
    hosts
        .iter()
        .map(|host| hard_limit(host).map(u64::from))
        .sum()
}

/// Most ranks a host may take when oversubscribing; `None` for no limit.
fn hard_limit(host: &HostEntry) -> Option<u32> {
    host.max_slots.map(|max_slots| max_slots.max(host.slots))
}

/// Host index of each rank under `--map-by slot`; ranks of a host are contiguous.
fn map_by_slot(hosts: &[HostEntry], ranks: u32) -> Vec<usize> {
    let mut counts = Vec::with_capacity(hosts.len());
    let mut left = ranks;
    for host in hosts {
        let count = host.slots.min(left);
        counts.push(count);
        left -= count;
    }
    let mut extra_order = Vec::new();
    deal_round_robin(
        &mut counts,
        |index| hard_limit(&hosts[index]),
        left,
        &mut extra_order,
    );
    counts
        .iter()
        .enumerate()
        .flat_map(|(index, &count)| std::iter::repeat_n(index, count as usize))
        .collect()
}

/// Host index of each rank under `--map-by node`.
fn map_by_node(hosts: &[HostEntry], ranks: u32) -> Vec<usize> {
    let mut counts = vec![0; hosts.len()];
    let mut order = Vec::with_capacity(ranks as usize);
    let within_slots = deal_round_robin(
        &mut counts,
        |index| Some(hosts[index].slots),
        ranks,
        &mut order,
    );
    deal_round_robin(
        &mut counts,
        |index| hard_limit(&hosts[index]),
        ranks - within_slots,
        &mut order,
    );
    order
}

/// Deals up to `ranks` ranks one per host per round, skipping hosts whose
/// count has reached `limit(index)` (`None`: no limit).
///
/// Pushes the host index of each dealt rank to `order` and returns how many
/// were dealt (fewer than `ranks` only when every host is at its limit).
fn deal_round_robin(
    counts: &mut [u32],
    limit: impl Fn(usize) -> Option<u32>,
    ranks: u32,
    order: &mut Vec<usize>,
) -> u32 {
    let has_room = |index: usize, count: u32| limit(index).is_none_or(|limit| count < limit);
    let mut open: Vec<usize> = (0..counts.len())
        .filter(|&index| has_room(index, counts[index]))
        .collect();
    let mut dealt = 0;
    while dealt < ranks && !open.is_empty() {
        for &index in open.iter().take((ranks - dealt) as usize) {
            counts[index] += 1;
            order.push(index);
            dealt += 1;
        }
        open.retain(|&index| has_room(index, counts[index]));
    }
    dealt
}

/// Turns the host index of each rank into the full placement.
fn describe_placement(hosts: &[HostEntry], host_of_rank: &[usize]) -> Placement {
    let mut local_sizes = vec![0u32; hosts.len()];
    for &index in host_of_rank {
        local_sizes[index] += 1;
    }
    let node_of_host = number_used_hosts(&local_sizes);
    let mut next_local_rank = vec![0u32; hosts.len()];
    let ranks = (0u32..)
        .zip(host_of_rank)
        .map(|(rank, &index)| {
            let local_rank = next_local_rank[index];
            next_local_rank[index] += 1;
            RankPlacement {
                rank,
                host: hosts[index].name.clone(),
                node: node_of_host[index],
                local_rank,
                local_size: local_sizes[index],
            }
        })
        .collect();
    Placement { ranks }
}

/// Node number of each host: its index among the hosts with ranks (0 for unused hosts).
fn number_used_hosts(local_sizes: &[u32]) -> Vec<u32> {
    let mut next_node = 0;
    local_sizes
        .iter()
        .map(|&size| {
            let node = next_node;
            if size > 0 {
                next_node += 1;
            }
            node
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Host entries from `(name, slots, max_slots)`.
    fn hosts(specs: &[(&str, u32, Option<u32>)]) -> Vec<HostEntry> {
        specs
            .iter()
            .map(|&(name, slots, max_slots)| HostEntry {
                name: name.to_owned(),
                slots,
                max_slots,
            })
            .collect()
    }

    /// Places and fails the test on error.
    fn placed(hosts: &[HostEntry], ranks: u32, map_by: MapBy, oversubscribe: bool) -> Placement {
        match place(hosts, ranks, map_by, oversubscribe) {
            Ok(placement) => placement,
            Err(error) => panic!("placement failed: {error}"),
        }
    }

    /// Host names of the ranks, in rank order.
    fn host_names(placement: &Placement) -> Vec<&str> {
        placement.ranks.iter().map(|r| r.host.as_str()).collect()
    }

    /// `(node, local_rank, local_size)` of the ranks, in rank order.
    fn local_views(placement: &Placement) -> Vec<(u32, u32, u32)> {
        placement
            .ranks
            .iter()
            .map(|r| (r.node, r.local_rank, r.local_size))
            .collect()
    }

    #[test]
    fn map_by_slot_fills_hosts_in_order() {
        let hosts = hosts(&[("a", 2, None), ("b", 3, None), ("c", 2, None)]);
        let placement = placed(&hosts, 6, MapBy::Slot, false);
        assert_eq!(host_names(&placement), ["a", "a", "b", "b", "b", "c"]);
        assert_eq!(
            local_views(&placement),
            [
                (0, 0, 2),
                (0, 1, 2),
                (1, 0, 3),
                (1, 1, 3),
                (1, 2, 3),
                (2, 0, 1)
            ]
        );
        let ranks: Vec<u32> = placement.ranks.iter().map(|r| r.rank).collect();
        assert_eq!(ranks, [0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn map_by_slot_leaves_unused_hosts_out_of_node_numbering() {
        let hosts = hosts(&[("a", 4, None), ("b", 4, None)]);
        let placement = placed(&hosts, 3, MapBy::Slot, false);
        assert_eq!(host_names(&placement), ["a", "a", "a"]);
        assert_eq!(local_views(&placement), [(0, 0, 3), (0, 1, 3), (0, 2, 3)]);
    }

    #[test]
    fn map_by_node_deals_round_robin() {
        let hosts = hosts(&[("a", 2, None), ("b", 2, None), ("c", 2, None)]);
        let placement = placed(&hosts, 5, MapBy::Node, false);
        assert_eq!(host_names(&placement), ["a", "b", "c", "a", "b"]);
        assert_eq!(
            local_views(&placement),
            [(0, 0, 2), (1, 0, 2), (2, 0, 1), (0, 1, 2), (1, 1, 2)]
        );
    }

    #[test]
    fn map_by_node_skips_full_hosts_with_uneven_slots() {
        let hosts = hosts(&[("a", 1, None), ("b", 3, None), ("c", 2, None)]);
        let placement = placed(&hosts, 6, MapBy::Node, false);
        assert_eq!(host_names(&placement), ["a", "b", "c", "b", "c", "b"]);
    }

    #[test]
    fn node_numbers_follow_hostfile_order_of_used_hosts() {
        let hosts = hosts(&[("a", 1, None), ("b", 1, None), ("c", 1, None)]);
        let placement = placed(&hosts, 2, MapBy::Node, false);
        assert_eq!(host_names(&placement), ["a", "b"]);
        assert_eq!(local_views(&placement), [(0, 0, 1), (1, 0, 1)]);
    }

    #[test]
    fn too_many_ranks_without_oversubscribe_is_an_error() {
        let hosts = hosts(&[("a", 2, None), ("b", 1, None)]);
        for map_by in [MapBy::Slot, MapBy::Node] {
            let error = place(&hosts, 4, map_by, false);
            assert_eq!(
                error,
                Err(PlacementError::NotEnoughSlots {
                    requested: 4,
                    available: 3
                })
            );
            let message = error.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(message.contains("--oversubscribe"), "{message}");
        }
    }

    #[test]
    fn oversubscribed_slot_mapping_keeps_host_ranks_contiguous() {
        let hosts = hosts(&[("a", 2, None), ("b", 1, None)]);
        let placement = placed(&hosts, 6, MapBy::Slot, true);
        assert_eq!(host_names(&placement), ["a", "a", "a", "a", "b", "b"]);
        assert_eq!(
            local_views(&placement),
            [
                (0, 0, 4),
                (0, 1, 4),
                (0, 2, 4),
                (0, 3, 4),
                (1, 0, 2),
                (1, 1, 2)
            ]
        );
    }

    #[test]
    fn oversubscribed_node_mapping_continues_round_robin() {
        let hosts = hosts(&[("a", 1, None), ("b", 2, None)]);
        let placement = placed(&hosts, 6, MapBy::Node, true);
        assert_eq!(host_names(&placement), ["a", "b", "b", "a", "b", "a"]);
    }

    #[test]
    fn oversubscription_respects_max_slots() {
        let hosts = hosts(&[("a", 1, Some(1)), ("b", 1, Some(3)), ("c", 1, None)]);
        let placement = placed(&hosts, 7, MapBy::Slot, true);
        assert_eq!(host_names(&placement), ["a", "b", "b", "b", "c", "c", "c"]);
        let placement = placed(&hosts, 7, MapBy::Node, true);
        assert_eq!(host_names(&placement), ["a", "b", "c", "b", "c", "b", "c"]);
    }

    #[test]
    fn exceeding_every_max_slots_is_an_error() {
        let hosts = hosts(&[("a", 1, Some(2)), ("b", 2, Some(3))]);
        assert!(place(&hosts, 5, MapBy::Node, true).is_ok());
        assert_eq!(
            place(&hosts, 6, MapBy::Slot, true),
            Err(PlacementError::ExceedsMaxSlots {
                requested: 6,
                available: 5
            })
        );
    }

    #[test]
    fn zero_ranks_and_no_hosts() {
        assert_eq!(
            place(&[], 0, MapBy::Slot, false).map(|p| p.ranks.len()),
            Ok(0)
        );
        assert_eq!(
            place(&[], 1, MapBy::Node, true),
            Err(PlacementError::NoHosts { requested: 1 })
        );
    }

    #[test]
    fn map_by_parses_as_a_clap_value() {
        use clap::ValueEnum as _;
        assert_eq!(MapBy::from_str("slot", false), Ok(MapBy::Slot));
        assert_eq!(MapBy::from_str("node", false), Ok(MapBy::Node));
        assert_eq!(MapBy::default(), MapBy::Slot);
    }

    /// Random hosts: slots 1..=5, optional max_slots at or above slots.
    fn random_hosts() -> impl Strategy<Value = Vec<HostEntry>> {
        prop::collection::vec((1..=5u32, prop::option::of(0..=4u32)), 1..=6).prop_map(|specs| {
            specs
                .into_iter()
                .enumerate()
                .map(|(index, (slots, max_extra))| HostEntry {
                    name: format!("host{index}"),
                    slots,
                    max_slots: max_extra.map(|extra| slots + extra),
                })
                .collect()
        })
    }

    /// Number of ranks on each host.
    fn counts_per_host(hosts: &[HostEntry], placement: &Placement) -> Vec<u32> {
        hosts
            .iter()
            .map(|host| {
                placement
                    .ranks
                    .iter()
                    .filter(|r| r.host == host.name)
                    .count() as u32
            })
            .collect()
    }

    proptest! {
        #[test]
        fn placement_invariants(
            hosts in random_hosts(),
            ranks in 0..40u32,
            map_by in prop_oneof![Just(MapBy::Slot), Just(MapBy::Node)],
            oversubscribe in any::<bool>(),
        ) {
            let total_slots: u32 = hosts.iter().map(|h| h.slots).sum();
            let hard_limit: Option<u32> = hosts.iter().map(|h| h.max_slots).sum();
            let result = place(&hosts, ranks, map_by, oversubscribe);
            if ranks > total_slots && !oversubscribe {
                prop_assert!(
                    matches!(result, Err(PlacementError::NotEnoughSlots { .. })),
                    "{:?}",
                    result
                );
                return Ok(());
            }
            if hard_limit.is_some_and(|limit| ranks > limit) {
                prop_assert!(
                    matches!(result, Err(PlacementError::ExceedsMaxSlots { .. })),
                    "{:?}",
                    result
                );
                return Ok(());
            }
            let placement = result.map_err(|e| TestCaseError::fail(e.to_string()))?;

            // Every rank placed exactly once, in rank order.
            prop_assert_eq!(placement.ranks.len(), ranks as usize);
            for (index, rank) in placement.ranks.iter().enumerate() {
                prop_assert_eq!(rank.rank as usize, index);
            }

            let counts = counts_per_host(&hosts, &placement);
            let mut next_node = 0;
            for (host, &count) in hosts.iter().zip(&counts) {
                let on_host: Vec<&RankPlacement> =
                    placement.ranks.iter().filter(|r| r.host == host.name).collect();
                // Local ranks are 0..local_size in rank order; one node number per host.
                for (local, rank) in on_host.iter().enumerate() {
                    prop_assert_eq!(rank.local_rank as usize, local);
                    prop_assert_eq!(rank.local_size, count);
                    prop_assert_eq!(rank.node, next_node);
                }
                if count > 0 {
                    next_node += 1;
                }
                // Slots hold unless oversubscribed; max_slots always hold.
                if ranks <= total_slots {
                    prop_assert!(count <= host.slots);
                }
                prop_assert!(host.max_slots.is_none_or(|max| count <= max));
                if map_by == MapBy::Slot && count > 0 {
                    let first = on_host[0].rank;
                    prop_assert!(on_host.iter().zip(first..).all(|(r, expected)| r.rank == expected));
                }
            }

            // By-node mapping within the slots is balanced within 1, except for full hosts.
            if map_by == MapBy::Node && ranks <= total_slots {
                for (host, &count) in hosts.iter().zip(&counts) {
                    if count < host.slots {
                        prop_assert!(counts.iter().all(|&other| other <= count + 1), "{:?}", counts);
                    }
                }
            }
        }
    }
}
