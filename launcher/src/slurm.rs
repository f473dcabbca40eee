//! Reading a Slurm allocation: the hosts of `SLURM_JOB_NODELIST` (with
//! ranges such as `node[01-04,07]`) and the slots of
//! `SLURM_TASKS_PER_NODE` (such as `2(x3),1`).
//!
//! Inside an allocation (`SLURM_JOB_ID` set) and without a hostfile,
//! `mprun` takes its hosts and slots from these variables.

use thiserror::Error;

use crate::hostfile::HostEntry;

/// Why the Slurm variables do not describe an allocation.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub(crate) enum SlurmError {
    /// A bracket in the node list is not closed.
    #[error("SLURM_JOB_NODELIST={list:?}: unclosed '['")]
    Unclosed {
        /// The node list.
        list: String,
    },
    /// A range in the node list is not `a-b` with numbers `a <= b`.
    #[error("SLURM_JOB_NODELIST={list:?}: bad range {range:?}, expected N or N-M with N <= M")]
    BadRange {
        /// The node list.
        list: String,
        /// The offending range.
        range: String,
    },
    /// An entry of the tasks list is not `N` or `N(xK)`.
    #[error("SLURM_TASKS_PER_NODE={list:?}: bad entry {entry:?}, expected N or N(xK)")]
    BadTasks {
        /// The tasks list.
        list: String,
        /// The offending entry.
        entry: String,
    },
    /// The two lists do not describe the same number of nodes.
    #[error("SLURM_JOB_NODELIST names {nodes} nodes but SLURM_TASKS_PER_NODE describes {tasks}")]
    CountMismatch {
        /// Nodes in the node list.
        nodes: usize,
        /// Nodes in the tasks list.
        tasks: usize,
    },
}

/// Expands a Slurm host list (`a,b[1-3,07],c[01-02]d`) into host names,
/// keeping zero padding (`node[08-10]` gives `node08 node09 node10`).
pub(crate) fn expand_nodelist(list: &str) -> Result<Vec<String>, SlurmError> {
    let mut hosts = Vec::new();
    for item in split_top_level(list) {
        if item.is_empty() {
            continue;
        }
        let mut names = vec![String::new()];
        let mut rest = item;
        while let Some(open) = rest.find('[') {
            let close =
                rest[open..]
                    .find(']')
                    .map(|c| open + c)
                    .ok_or_else(|| SlurmError::Unclosed {
                        list: list.to_owned(),
                    })?;
            let prefix = &rest[..open];
            let choices = expand_ranges(list, &rest[open + 1..close])?;
            names = names
                .iter()
                .flat_map(|name| {
                    choices
                        .iter()
                        .map(move |choice| format!("{name}{prefix}{choice}"))
                })
                .collect();
            rest = &rest[close + 1..];
        }
        hosts.extend(names.into_iter().map(|name| name + rest));
    }
    Ok(hosts)
}

/// Splits at commas that are not inside brackets.
fn split_top_level(list: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in list.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(list[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(list[start..].trim());
    parts
}

/// `01-04,07` → `01 02 03 04 07`, keeping the width of zero-padded numbers.
fn expand_ranges(list: &str, ranges: &str) -> Result<Vec<String>, SlurmError> {
    let bad = |range: &str| SlurmError::BadRange {
        list: list.to_owned(),
        range: range.to_owned(),
    };
    let mut out = Vec::new();
    for range in ranges.split(',') {
        let (low, high) = range.split_once('-').unwrap_or((range, range));
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(low) || !digits(high) {
            return Err(bad(range));
        }
        let width = if low.starts_with('0') { low.len() } else { 0 };
        let (a, b): (u64, u64) = (
            low.parse().map_err(|_| bad(range))?,
            high.parse().map_err(|_| bad(range))?,
        );
        if a > b || b - a > 1_000_000 {
            return Err(bad(range));
        }
        out.extend((a..=b).map(|n| format!("{n:0width$}")));
    }
    Ok(out)
}

/// Expands `2(x3),1` into `[2, 2, 2, 1]`.
pub(crate) fn expand_tasks(list: &str) -> Result<Vec<u32>, SlurmError> {
    let mut counts = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = || SlurmError::BadTasks {
            list: list.to_owned(),
            entry: entry.to_owned(),
        };
        let (count, repeat) = match entry.split_once("(x") {
            Some((count, tail)) => {
                let repeat = tail.strip_suffix(')').ok_or_else(bad)?;
                (count, repeat.parse::<u32>().map_err(|_| bad())?)
            }
            None => (entry, 1),
        };
        let count: u32 = count.parse().map_err(|_| bad())?;
        if count == 0 || repeat == 0 || repeat > 1_000_000 {
            return Err(bad());
        }
        counts.extend(std::iter::repeat_n(count, repeat as usize));
    }
    Ok(counts)
}

/// The allocation's hosts with their slots.
pub(crate) fn allocation(
    nodelist: &str,
    tasks_per_node: &str,
) -> Result<Vec<HostEntry>, SlurmError> {
    let hosts = expand_nodelist(nodelist)?;
    let tasks = expand_tasks(tasks_per_node)?;
    if hosts.len() != tasks.len() {
        return Err(SlurmError::CountMismatch {
            nodes: hosts.len(),
            tasks: tasks.len(),
        });
    }
    Ok(hosts
        .into_iter()
        .zip(tasks)
        .map(|(name, slots)| HostEntry {
            name,
            slots,
            max_slots: None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn node_lists_expand_with_padding_and_several_brackets() {
        assert_eq!(
            expand_nodelist("node[01-04,07]").unwrap(),
            ["node01", "node02", "node03", "node04", "node07"]
        );
        assert_eq!(
            expand_nodelist("a,b[8-10]").unwrap(),
            ["a", "b8", "b9", "b10"]
        );
        assert_eq!(
            expand_nodelist("r[1-2]n[1-2]").unwrap(),
            ["r1n1", "r1n2", "r2n1", "r2n2"]
        );
        assert_eq!(
            expand_nodelist("c[09-11]x").unwrap(),
            ["c09x", "c10x", "c11x"]
        );
        assert_eq!(expand_nodelist("single").unwrap(), ["single"]);
    }

    #[test]
    fn bad_node_lists_say_why() {
        assert!(matches!(
            expand_nodelist("n[1-3"),
            Err(SlurmError::Unclosed { .. })
        ));
        assert!(
            matches!(expand_nodelist("n[3-1]"), Err(SlurmError::BadRange { range, .. }) if range == "3-1")
        );
        assert!(matches!(
            expand_nodelist("n[a-b]"),
            Err(SlurmError::BadRange { .. })
        ));
    }

    #[test]
    fn tasks_per_node_expand() {
        assert_eq!(expand_tasks("2(x3),1").unwrap(), [2, 2, 2, 1]);
        assert_eq!(expand_tasks("16").unwrap(), [16]);
        assert!(matches!(
            expand_tasks("2(x3"),
            Err(SlurmError::BadTasks { .. })
        ));
        assert!(matches!(
            expand_tasks("0"),
            Err(SlurmError::BadTasks { .. })
        ));
        assert!(matches!(
            expand_tasks("x"),
            Err(SlurmError::BadTasks { .. })
        ));
    }

    #[test]
    fn allocation_pairs_hosts_with_slots() {
        let hosts = allocation("n[1-3]", "4(x2),2").unwrap();
        let pairs: Vec<(&str, u32)> = hosts.iter().map(|h| (h.name.as_str(), h.slots)).collect();
        assert_eq!(pairs, [("n1", 4), ("n2", 4), ("n3", 2)]);
        assert_eq!(
            allocation("n[1-3]", "4"),
            Err(SlurmError::CountMismatch { nodes: 3, tasks: 1 })
        );
    }

    proptest! {
        #[test]
        fn compressed_lists_expand_to_what_they_compress(
            prefix in "[a-z]{1,6}",
            runs in proptest::collection::vec((0u32..500, 0u32..20), 1..5),
            width in 0usize..4,
        ) {
            let mut expected = Vec::new();
            let mut parts = Vec::new();
            for (start, len) in &runs {
                let end = start + len;
                parts.push(format!("{start:0width$}-{end:0width$}"));
                let w = if width > 0 && format!("{start:0width$}").starts_with('0') { format!("{start:0width$}").len() } else { 0 };
                expected.extend((*start..=end).map(|n| format!("{prefix}{n:0w$}")));
            }
            let list = format!("{prefix}[{}]", parts.join(","));
            prop_assert_eq!(expand_nodelist(&list).unwrap(), expected);
        }

        #[test]
        fn tasks_lists_round_trip(counts in proptest::collection::vec((1u32..64, 1u32..5), 1..6)) {
            let text: Vec<String> = counts.iter().map(|(c, r)| if *r == 1 { c.to_string() } else { format!("{c}(x{r})") }).collect();
            let expected: Vec<u32> = counts.iter().flat_map(|(c, r)| std::iter::repeat_n(*c, *r as usize)).collect();
            prop_assert_eq!(expand_tasks(&text.join(",")).unwrap(), expected);
        }
    }
}
