//! Hostfile parsing: which hosts a job may use and how many ranks each takes.
//!
//! Two line formats are accepted, and may be mixed within one file (but not
//! within one line):
//!
//! - Open MPI: `host`, `host slots=N`, `host slots=N max_slots=M`,
//!   `host max-slots=M`. `count`, `cpu` and `cpus` are synonyms of `slots`
//!   (as Open MPI and LAM accept); `max-slots` is a synonym of `max_slots`.
//!   Spaces around `=` are tolerated.
//! - MPICH: `host:N` (N slots).
//!
//! A host alone means one slot. A `#` starts a comment anywhere in a line;
//! blank lines are skipped. A host listed on several lines keeps its first
//! position and adds up its slots (and its `max_slots` when every line gives
//! one; otherwise it has no maximum).
//!
//! Host names are DNS names, IPv4 addresses or bracketed IPv6 addresses
//! (`[::1]`, `[fe80::1]:4`); IPv6 addresses are stored without brackets in
//! their canonical form.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

/// Longest DNS name accepted, in characters.
const MAX_HOST_NAME_LEN: usize = 253;
/// Longest DNS label accepted, in characters.
const MAX_LABEL_LEN: usize = 63;

/// One host of a hostfile, after duplicates have been added up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostEntry {
    /// Host name as written (IPv6 addresses: canonical, without brackets).
    pub(crate) name: String,
    /// Number of ranks the host takes before it counts as oversubscribed.
    pub(crate) slots: u32,
    /// Hard limit on the ranks of the host, even when oversubscribing.
    pub(crate) max_slots: Option<u32>,
}

/// A parsed hostfile: its hosts in order of first appearance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hostfile {
    /// Hosts in the order they first appear in the file, each name once.
    pub(crate) hosts: Vec<HostEntry>,
}

/// Why a hostfile could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HostfileError {
    /// The file could not be read.
    #[error("{path}: cannot read hostfile: {source}")]
    Io {
        /// The hostfile.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A `key=value` option has a key that is not a known option.
    #[error(
        "{path}:{line}: unknown option \"{key}\"; expected slots=N (or count=, cpu=, cpus=) or max_slots=M (or max-slots=)"
    )]
    UnknownKey {
        /// The hostfile.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The key as written.
        key: String,
    },
    /// A word after the host name is not of the form `key=value`.
    #[error("{path}:{line}: expected key=value after the host name, found \"{found}\"")]
    ExpectedKeyValue {
        /// The hostfile.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The offending word.
        found: String,
    },
    /// A count is not a positive integer that fits in 32 bits.
    #[error("{path}:{line}: expected a positive integer after \"{after}\", found \"{found}\"")]
    BadNumber {
        /// The hostfile.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What precedes the number, e.g. `slots=` or `node1:`.
        after: String,
        /// The text found instead of a positive integer.
        found: String,
    },
    /// The host is not a DNS name, an IPv4 address or a bracketed IPv6 address.
    #[error(
        "{path}:{line}: expected a host name (DNS name, IPv4 address or bracketed IPv6 address), found \"{found}\": {reason}"
    )]
    BadHostName {
        /// The hostfile.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The host as written.
        found: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `max_slots` is smaller than `slots` on one line.
    #[error(
        "{path}:{line}: host \"{host}\" has max_slots={max_slots} below slots={slots}; expected max_slots >= slots"
    )]
    MaxSlotsBelowSlots {
        /// The hostfile.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The host name.
        host: String,
        /// The slots of the line (1 when not given).
        slots: u32,
        /// The max_slots of the line.
        max_slots: u32,
    },
    /// One line sets the same option twice (synonyms count as the same option).
    #[error(
        "{path}:{line}: {option} is set twice, by \"{first}\" and by \"{second}\"; expected each option at most once per line"
    )]
    DuplicateKey {
        /// The hostfile.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The option's canonical name (`slots` or `max_slots`).
        option: &'static str,
        /// The key of the first setting, as written.
        first: String,
        /// The key of the second setting, as written.
        second: String,
    },
    /// One line mixes the MPICH `host:N` form with Open MPI `key=value` options.
    #[error(
        "{path}:{line}: \"{host}\" is in MPICH form host:N but the line also sets \"{key}=\"; expected either host:N or host slots=N max_slots=M"
    )]
    MixedSyntax {
        /// The hostfile.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The `host:N` word as written.
        host: String,
        /// The first Open MPI key on the line, as written.
        key: String,
    },
    /// Adding up the slots of a host listed several times overflows 32 bits.
    #[error(
        "{path}:{line}: the slots of host \"{host}\" add up to more than {max}; expected a total that fits in 32 bits",
        max = u32::MAX
    )]
    SlotsOverflow {
        /// The hostfile.
        path: PathBuf,
        /// 1-based line number of the line that overflowed.
        line: usize,
        /// The host name.
        host: String,
    },
    /// The file lists no host at all.
    #[error("{path}: no hosts found; expected at least one line naming a host")]
    Empty {
        /// The hostfile.
        path: PathBuf,
    },
}

/// Reads and parses the hostfile at `path`.
pub(crate) fn read(path: &Path) -> Result<Hostfile, HostfileError> {
    let text = std::fs::read_to_string(path).map_err(|source| HostfileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Parses hostfile `text`; `path` only names the file in errors.
pub(crate) fn parse(path: &Path, text: &str) -> Result<Hostfile, HostfileError> {
    let mut hosts = HostList::default();
    for (index, raw_line) in text.lines().enumerate() {
        let at = LineRef {
            path,
            line: index + 1,
        };
        if let Some(entry) = parse_line(&at, raw_line)? {
            hosts.add(&at, entry)?;
        }
    }
    hosts.finish(path)
}

/// Prints `hostfile` back in Open MPI format, one host per line.
#[cfg_attr(
    not(test),
    allow(
        dead_code,
        reason = "the round-trip tests use it; mprun may use it to show the effective hostfile"
    )
)]
pub(crate) fn render(hostfile: &Hostfile) -> String {
    let mut text = String::new();
    for host in &hostfile.hosts {
        let _ = write!(
            text,
            "{} slots={}",
            render_host_name(&host.name),
            host.slots
        );
        if let Some(max_slots) = host.max_slots {
            let _ = write!(text, " max_slots={max_slots}");
        }
        text.push('\n');
    }
    text
}

/// Writes a host name so that the parser reads it back: IPv6 in brackets.
fn render_host_name(name: &str) -> String {
    if name.contains(':') {
        format!("[{name}]")
    } else {
        name.to_owned()
    }
}

/// Where in the hostfile a line is, for error messages.
#[derive(Debug, Clone, Copy)]
struct LineRef<'a> {
    /// The hostfile.
    path: &'a Path,
    /// 1-based line number.
    line: usize,
}

impl LineRef<'_> {
    /// The hostfile path, owned for an error.
    fn path(&self) -> PathBuf {
        self.path.to_path_buf()
    }

    /// A `BadNumber` error for `found` after `after`.
    fn bad_number(&self, after: &str, found: &str) -> HostfileError {
        HostfileError::BadNumber {
            path: self.path(),
            line: self.line,
            after: after.to_owned(),
            found: found.to_owned(),
        }
    }

    /// A `BadHostName` error for `found`.
    fn bad_host_name(&self, found: &str, reason: &'static str) -> HostfileError {
        HostfileError::BadHostName {
            path: self.path(),
            line: self.line,
            found: found.to_owned(),
            reason,
        }
    }
}

/// Hosts collected so far, duplicates added up at their first position.
#[derive(Debug, Default)]
struct HostList {
    /// Hosts in order of first appearance.
    hosts: Vec<HostEntry>,
    /// Index in `hosts` of each host name.
    index_by_name: HashMap<String, usize>,
}

impl HostList {
    /// Adds `entry`, merging it into an earlier entry of the same host.
    fn add(&mut self, at: &LineRef<'_>, entry: HostEntry) -> Result<(), HostfileError> {
        match self.index_by_name.get(&entry.name) {
            Some(&index) => merge_into(at, &mut self.hosts[index], &entry),
            None => {
                self.index_by_name
                    .insert(entry.name.clone(), self.hosts.len());
                self.hosts.push(entry);
                Ok(())
            }
        }
    }

    /// The finished hostfile, or `Empty` if no line named a host.
    fn finish(self, path: &Path) -> Result<Hostfile, HostfileError> {
        if self.hosts.is_empty() {
            return Err(HostfileError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(Hostfile { hosts: self.hosts })
    }
}

/// Adds the slots of `extra` to `existing`; `max_slots` stays only if both have one.
fn merge_into(
    at: &LineRef<'_>,
    existing: &mut HostEntry,
    extra: &HostEntry,
) -> Result<(), HostfileError> {
    let overflow = || HostfileError::SlotsOverflow {
        path: at.path(),
        line: at.line,
        host: existing.name.clone(),
    };
    let slots = existing
        .slots
        .checked_add(extra.slots)
        .ok_or_else(overflow)?;
    let max_slots = match (existing.max_slots, extra.max_slots) {
        (Some(a), Some(b)) => Some(a.checked_add(b).ok_or_else(overflow)?),
        _ => None,
    };
    existing.slots = slots;
    existing.max_slots = max_slots;
    Ok(())
}

/// Parses one line; `None` for a blank or comment-only line.
fn parse_line(at: &LineRef<'_>, raw_line: &str) -> Result<Option<HostEntry>, HostfileError> {
    let content = strip_comment(raw_line).trim();
    if content.is_empty() {
        return Ok(None);
    }
    let (host_word, rest) = split_first_word(content);
    let host = parse_host_word(at, host_word)?;
    let options = parse_options(at, rest)?;
    match host.mpich_slots {
        Some(slots) => mpich_entry(at, host_word, host.name, slots, &options).map(Some),
        None => open_mpi_entry(at, host.name, &options).map(Some),
    }
}

/// The part of `line` before any `#`.
fn strip_comment(line: &str) -> &str {
    line.split('#').next().unwrap_or_default()
}

/// Splits trimmed, non-empty `content` into its first word and the rest.
fn split_first_word(content: &str) -> (&str, &str) {
    content
        .split_once(char::is_whitespace)
        .unwrap_or((content, ""))
}

/// The host word of a line: a name, with a slot count in MPICH form.
#[derive(Debug)]
struct HostWord {
    /// Validated host name (IPv6 canonical, unbracketed).
    name: String,
    /// The `N` of `host:N`, if the word had one.
    mpich_slots: Option<u32>,
}

/// Parses `host`, `host:N`, `[v6]` or `[v6]:N`.
fn parse_host_word(at: &LineRef<'_>, word: &str) -> Result<HostWord, HostfileError> {
    if word.starts_with('[') {
        return parse_bracketed_host_word(at, word);
    }
    let (name, count) = match word.split_once(':') {
        Some((_, after)) if after.contains(':') => {
            return Err(at.bad_host_name(word, "IPv6 addresses must be in brackets, e.g. [::1]"));
        }
        Some((name, count)) => (name, Some(count)),
        None => (word, None),
    };
    validate_dns_name(name).map_err(|reason| at.bad_host_name(name, reason))?;
    let mpich_slots = count
        .map(|count| parse_count(at, &format!("{name}:"), count))
        .transpose()?;
    Ok(HostWord {
        name: name.to_owned(),
        mpich_slots,
    })
}

/// Parses `[v6]` or `[v6]:N`.
fn parse_bracketed_host_word(at: &LineRef<'_>, word: &str) -> Result<HostWord, HostfileError> {
    let inner_and_after = &word[1..];
    let Some((inner, after)) = inner_and_after.split_once(']') else {
        return Err(at.bad_host_name(word, "missing closing ']'"));
    };
    let address: Ipv6Addr = inner
        .parse()
        .map_err(|_| at.bad_host_name(word, "not a valid IPv6 address inside the brackets"))?;
    let mpich_slots = match after.strip_prefix(':') {
        Some(count) => Some(parse_count(at, &format!("[{inner}]:"), count)?),
        None if after.is_empty() => None,
        None => return Err(at.bad_host_name(word, "unexpected text after ']'")),
    };
    Ok(HostWord {
        name: address.to_string(),
        mpich_slots,
    })
}

/// Checks that `name` is a DNS name or an IPv4 address; the error says why not.
fn validate_dns_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("the name is empty");
    }
    if name.len() > MAX_HOST_NAME_LEN {
        return Err("longer than 253 characters");
    }
    if name.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return name
            .parse::<Ipv4Addr>()
            .map(|_| ())
            .map_err(|_| "not a valid IPv4 address");
    }
    name.split('.').try_for_each(validate_dns_label)
}

/// Checks one dot-separated label of a DNS name.
fn validate_dns_label(label: &str) -> Result<(), &'static str> {
    if label.is_empty() {
        return Err("empty label (leading, trailing or doubled '.')");
    }
    if label.len() > MAX_LABEL_LEN {
        return Err("a label is longer than 63 characters");
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if !label.chars().all(allowed) {
        return Err("only letters, digits, '-', '_' and '.' are allowed");
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err("a label starts or ends with '-'");
    }
    Ok(())
}

/// Parses a positive count written as decimal digits only.
fn parse_count(at: &LineRef<'_>, after: &str, text: &str) -> Result<u32, HostfileError> {
    let all_digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    match text.parse::<u32>() {
        Ok(count) if all_digits && count > 0 => Ok(count),
        _ => Err(at.bad_number(after, text)),
    }
}

/// One `key=value` option as written.
#[derive(Debug)]
struct RawOption<'a> {
    /// The key as written.
    key: &'a str,
    /// The value as written (possibly empty).
    value: &'a str,
}

/// Splits the text after the host word into `key=value` options.
///
/// Accepts `key=value`, `key =value`, `key= value` and `key = value`.
fn parse_options<'a>(at: &LineRef<'_>, rest: &'a str) -> Result<Vec<RawOption<'a>>, HostfileError> {
    let mut words = rest.split_whitespace().peekable();
    let mut options = Vec::new();
    while let Some(word) = words.next() {
        let (key, value) = match word.split_once('=') {
            Some((key, value)) => (key, value),
            None => match words.next_if(|next| next.starts_with('=')) {
                Some(next) => (word, &next[1..]),
                None => return Err(expected_key_value(at, word)),
            },
        };
        if key.is_empty() {
            return Err(expected_key_value(at, word));
        }
        let value = match value {
            "" => words.next_if(|next| !next.contains('=')).unwrap_or(""),
            value => value,
        };
        options.push(RawOption { key, value });
    }
    Ok(options)
}

/// An `ExpectedKeyValue` error for `word`.
fn expected_key_value(at: &LineRef<'_>, word: &str) -> HostfileError {
    HostfileError::ExpectedKeyValue {
        path: at.path(),
        line: at.line,
        found: word.to_owned(),
    }
}

/// The entry of an MPICH `host:N` line, which takes no options.
fn mpich_entry(
    at: &LineRef<'_>,
    host_word: &str,
    name: String,
    slots: u32,
    options: &[RawOption<'_>],
) -> Result<HostEntry, HostfileError> {
    if let Some(option) = options.first() {
        return Err(HostfileError::MixedSyntax {
            path: at.path(),
            line: at.line,
            host: host_word.to_owned(),
            key: option.key.to_owned(),
        });
    }
    Ok(HostEntry {
        name,
        slots,
        max_slots: None,
    })
}

/// The options a line may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OptionKind {
    /// `slots` and its synonyms.
    Slots,
    /// `max_slots` and its synonyms.
    MaxSlots,
}

impl OptionKind {
    /// The option a key names, synonyms included.
    fn from_key(key: &str) -> Option<Self> {
        match key {
            "slots" | "count" | "cpu" | "cpus" => Some(Self::Slots),
            "max_slots" | "max-slots" => Some(Self::MaxSlots),
            _ => None,
        }
    }

    /// The canonical name of the option.
    fn canonical_name(self) -> &'static str {
        match self {
            Self::Slots => "slots",
            Self::MaxSlots => "max_slots",
        }
    }
}

/// A count set on a line, with the key that set it.
#[derive(Debug, Clone, Copy)]
struct SetCount<'a> {
    /// The key as written.
    key: &'a str,
    /// The count.
    count: u32,
}

/// The entry of an Open MPI line from its options.
fn open_mpi_entry(
    at: &LineRef<'_>,
    name: String,
    options: &[RawOption<'_>],
) -> Result<HostEntry, HostfileError> {
    let mut slots: Option<SetCount<'_>> = None;
    let mut max_slots: Option<SetCount<'_>> = None;
    for option in options {
        let kind = OptionKind::from_key(option.key).ok_or_else(|| HostfileError::UnknownKey {
            path: at.path(),
            line: at.line,
            key: option.key.to_owned(),
        })?;
        let target = match kind {
            OptionKind::Slots => &mut slots,
            OptionKind::MaxSlots => &mut max_slots,
        };
        set_once(at, kind, target, option)?;
    }
    let slots = slots.map_or(1, |set| set.count);
    let max_slots = max_slots.map(|set| set.count);
    check_max_slots(at, &name, slots, max_slots)?;
    Ok(HostEntry {
        name,
        slots,
        max_slots,
    })
}

/// Stores the count of `option` in `target`, unless the line already set it.
fn set_once<'a>(
    at: &LineRef<'_>,
    kind: OptionKind,
    target: &mut Option<SetCount<'a>>,
    option: &RawOption<'a>,
) -> Result<(), HostfileError> {
    if let Some(earlier) = target {
        return Err(HostfileError::DuplicateKey {
            path: at.path(),
            line: at.line,
            option: kind.canonical_name(),
            first: earlier.key.to_owned(),
            second: option.key.to_owned(),
        });
    }
    let count = parse_count(at, &format!("{}=", option.key), option.value)?;
    *target = Some(SetCount {
        key: option.key,
        count,
    });
    Ok(())
}

/// Rejects a `max_slots` below `slots`.
fn check_max_slots(
    at: &LineRef<'_>,
    name: &str,
    slots: u32,
    max_slots: Option<u32>,
) -> Result<(), HostfileError> {
    match max_slots {
        Some(max_slots) if max_slots < slots => Err(HostfileError::MaxSlotsBelowSlots {
            path: at.path(),
            line: at.line,
            host: name.to_owned(),
            slots,
            max_slots,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
