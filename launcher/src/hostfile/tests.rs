//! Tests of the hostfile parser: every format, every error, round trips.
use super::*;
use proptest::prelude::*;

/// Parses `text` as if it were `hosts.txt`.
fn parse_text(text: &str) -> Result<Hostfile, HostfileError> {
    parse(Path::new("hosts.txt"), text)
}

/// Parses `text`, failing the test on error.
fn hosts_of(text: &str) -> Vec<HostEntry> {
    match parse_text(text) {
        Ok(hostfile) => hostfile.hosts,
        Err(error) => panic!("parse failed: {error}"),
    }
}

/// Parses `text`, failing the test unless it is an error.
fn error_of(text: &str) -> HostfileError {
    match parse_text(text) {
        Ok(hostfile) => panic!("expected an error, parsed {hostfile:?}"),
        Err(error) => error,
    }
}

/// A host entry for expectations.
fn host(name: &str, slots: u32, max_slots: Option<u32>) -> HostEntry {
    HostEntry {
        name: name.to_owned(),
        slots,
        max_slots,
    }
}

/// Asserts the message of `error` starts with `hosts.txt:{line}:`.
fn assert_names_file_and_line(error: &HostfileError, line: usize) {
    let message = error.to_string();
    let prefix = format!("hosts.txt:{line}: ");
    assert!(message.starts_with(&prefix), "{message:?} lacks {prefix:?}");
}

#[test]
fn bare_host_has_one_slot() {
    assert_eq!(hosts_of("node1\n"), vec![host("node1", 1, None)]);
}

#[test]
fn open_mpi_slots_and_max_slots() {
    let text = "a slots=4\nb slots=2 max_slots=8\nc max-slots=3\nd max_slots=5 slots=5\n";
    assert_eq!(
        hosts_of(text),
        vec![
            host("a", 4, None),
            host("b", 2, Some(8)),
            host("c", 1, Some(3)),
            host("d", 5, Some(5)),
        ]
    );
}

#[test]
fn slot_synonyms() {
    let text = "a count=2\nb cpu=3\nc cpus=4\nd slots=5\n";
    let slots: Vec<u32> = hosts_of(text).iter().map(|h| h.slots).collect();
    assert_eq!(slots, vec![2, 3, 4, 5]);
}

#[test]
fn spaces_around_equals() {
    let text = "a slots = 2\nb slots= 3 max_slots =4\nc slots =5\n";
    assert_eq!(
        hosts_of(text),
        vec![
            host("a", 2, None),
            host("b", 3, Some(4)),
            host("c", 5, None)
        ]
    );
}

#[test]
fn mpich_form() {
    let text = "a:4\nb\n10.0.0.7:2\n";
    assert_eq!(
        hosts_of(text),
        vec![
            host("a", 4, None),
            host("b", 1, None),
            host("10.0.0.7", 2, None)
        ]
    );
}

#[test]
fn ipv6_in_brackets() {
    let text = "[::1]:2\n[fe80:0::1] slots=3\n";
    assert_eq!(
        hosts_of(text),
        vec![host("::1", 2, None), host("fe80::1", 3, None)]
    );
}

#[test]
fn host_name_forms() {
    let text = "localhost\nnode-01.cluster.example.org\n192.168.1.20\ncompute_7\n";
    let names: Vec<String> = hosts_of(text).into_iter().map(|h| h.name).collect();
    assert_eq!(
        names,
        [
            "localhost",
            "node-01.cluster.example.org",
            "192.168.1.20",
            "compute_7"
        ]
    );
}

#[test]
fn comments_and_blank_lines_are_skipped() {
    let text = "# a cluster\n\n   \n\ta slots=2 # two cores\n#b slots=9\nc:3#three\n  # end\n";
    assert_eq!(hosts_of(text), vec![host("a", 2, None), host("c", 3, None)]);
}

#[test]
fn crlf_line_endings() {
    assert_eq!(
        hosts_of("a slots=2\r\nb:3\r\n"),
        vec![host("a", 2, None), host("b", 3, None)]
    );
}

#[test]
fn duplicates_add_up_at_first_position() {
    let text = "a slots=2 max_slots=4\nb\na:3\nb slots=2\nc slots=1 max_slots=2\nc max_slots=3\n";
    assert_eq!(
        hosts_of(text),
        vec![
            host("a", 5, None),
            host("b", 3, None),
            host("c", 2, Some(5))
        ]
    );
}

#[test]
fn io_error_names_the_file() {
    let path = std::env::temp_dir().join("mpr-hostfile-test-missing/hosts.txt");
    let error = match read(&path) {
        Ok(hostfile) => panic!("read a missing file: {hostfile:?}"),
        Err(error) => error,
    };
    assert!(matches!(error, HostfileError::Io { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with(&format!("{}: ", path.display()))
    );
}

#[test]
fn read_parses_a_file() {
    let dir = std::env::temp_dir().join(format!("mpr-hostfile-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    let path = dir.join("hosts");
    std::fs::write(&path, "a:2\n").expect("write hostfile");
    let parsed = read(&path);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(parsed.expect("parse").hosts, vec![host("a", 2, None)]);
}

#[test]
fn unknown_key_error() {
    let error = error_of("a\n\nb slots=2 user=bob\n");
    assert!(
        matches!(&error, HostfileError::UnknownKey { line: 3, key, .. } if key == "user"),
        "{error:?}"
    );
    assert_names_file_and_line(&error, 3);
}

#[test]
fn expected_key_value_error() {
    let error = error_of("a\nb slots 2\n");
    assert!(
        matches!(&error, HostfileError::ExpectedKeyValue { line: 2, found, .. } if found == "slots"),
        "{error:?}"
    );
    assert_names_file_and_line(&error, 2);
}

#[test]
fn bad_number_error_message() {
    let error = error_of("a\nb\nc slots=abc\n");
    assert!(
        matches!(error, HostfileError::BadNumber { line: 3, .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "hosts.txt:3: expected a positive integer after \"slots=\", found \"abc\""
    );
}

#[test]
fn bad_number_rejects_zero_negative_signed_overflow_and_empty() {
    for (text, after, found) in [
        ("a slots=0", "slots=", "0"),
        ("a cpus=-2", "cpus=", "-2"),
        ("a slots=+2", "slots=", "+2"),
        ("a max_slots=4294967296", "max_slots=", "4294967296"),
        ("a slots=", "slots=", ""),
        ("a:0", "a:", "0"),
        ("a:", "a:", ""),
        ("[::1]:x", "[::1]:", "x"),
    ] {
        let error = error_of(&format!("# first\n{text}\n"));
        assert!(
            matches!(&error, HostfileError::BadNumber { line: 2, after: a, found: f, .. }
                if a == after && f == found),
            "{text}: {error:?}"
        );
        assert_names_file_and_line(&error, 2);
    }
}

#[test]
fn bad_host_name_error() {
    for name in [
        "-a",
        "a..b",
        "a.",
        "bad!host",
        "::1",
        "fe80::1:4",
        "[::1",
        "[zz]",
        "[::1]x",
        "300.1.2.3",
        ":4",
    ] {
        let error = error_of(&format!("ok\n{name}\n"));
        assert!(
            matches!(error, HostfileError::BadHostName { line: 2, .. }),
            "{name}: {error:?}"
        );
        assert_names_file_and_line(&error, 2);
    }
}

#[test]
fn max_slots_below_slots_error() {
    let error = error_of("a slots=4 max_slots=2\n");
    assert!(
        matches!(
            error,
            HostfileError::MaxSlotsBelowSlots {
                line: 1,
                slots: 4,
                max_slots: 2,
                ..
            }
        ),
        "{error:?}"
    );
    assert_names_file_and_line(&error, 1);
}

#[test]
fn duplicate_key_error_counts_synonyms() {
    let error = error_of("a\nb slots=2 cpus=3\n");
    assert!(
        matches!(&error, HostfileError::DuplicateKey { line: 2, option: "slots", first, second, .. }
            if first == "slots" && second == "cpus"),
        "{error:?}"
    );
    assert_names_file_and_line(&error, 2);
    let error = error_of("b max-slots=2 max_slots=3\n");
    assert!(
        matches!(
            error,
            HostfileError::DuplicateKey {
                line: 1,
                option: "max_slots",
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn mixed_syntax_error() {
    let error = error_of("a\nb\n\nc:2 slots=4\n");
    assert!(
        matches!(&error, HostfileError::MixedSyntax { line: 4, host, key, .. }
            if host == "c:2" && key == "slots"),
        "{error:?}"
    );
    assert_names_file_and_line(&error, 4);
}

#[test]
fn slots_overflow_error() {
    let error = error_of("a slots=4294967295\na\n");
    assert!(
        matches!(error, HostfileError::SlotsOverflow { line: 2, .. }),
        "{error:?}"
    );
    assert_names_file_and_line(&error, 2);
}

#[test]
fn empty_error() {
    let error = error_of("# nothing here\n\n   # still nothing\n");
    assert!(matches!(error, HostfileError::Empty { .. }), "{error:?}");
    assert!(error.to_string().starts_with("hosts.txt: "));
    assert!(matches!(error_of(""), HostfileError::Empty { .. }));
}

#[test]
fn example_hostfile_parses() {
    let example = include_str!("../../../hostfile.example");
    let hostfile = parse(Path::new("hostfile.example"), example);
    assert!(hostfile.is_ok(), "{hostfile:?}");
}

#[test]
fn render_brackets_ipv6() {
    let hostfile = Hostfile {
        hosts: vec![host("::1", 2, Some(3)), host("a", 1, None)],
    };
    assert_eq!(render(&hostfile), "[::1] slots=2 max_slots=3\na slots=1\n");
}

/// How a generated host line is written.
#[derive(Debug, Clone)]
enum LineForm {
    /// `host` or `host:N`.
    Mpich,
    /// `host key=N key=M`, with the key spellings and spacing chosen.
    OpenMpi {
        /// Index into the slot synonyms.
        slots_key: usize,
        /// Index into the max_slots synonyms.
        max_key: usize,
        /// Whether `max_slots` comes before `slots`.
        max_first: bool,
        /// Text around `=`.
        equals: &'static str,
    },
}

/// One generated line of a hostfile.
#[derive(Debug, Clone)]
enum GeneratedLine {
    /// A line with only whitespace.
    Blank(String),
    /// A comment line.
    Comment(String),
    /// A host line.
    Host {
        /// The host as written and as parsed.
        name: (String, String),
        /// Slots, if written.
        slots: Option<u32>,
        /// max_slots, if written (always >= slots).
        max_slots: Option<u32>,
        /// How the line is written.
        form: LineForm,
        /// Leading whitespace, separator and trailing comment.
        padding: (String, String, Option<String>),
    },
}

/// Host names as written and as parsed; a small pool forces duplicates.
fn host_name() -> impl Strategy<Value = (String, String)> {
    let pooled = prop::sample::select(vec![
        ("node01", "node01"),
        ("localhost", "localhost"),
        ("10.0.0.1", "10.0.0.1"),
        ("n-2.cluster.example", "n-2.cluster.example"),
        ("[::1]", "::1"),
        ("[fe80:0:0::7]", "fe80::7"),
    ])
    .prop_map(|(written, parsed)| (written.to_owned(), parsed.to_owned()));
    let random =
        "[a-z][a-z0-9_-]{0,8}[a-z0-9](\\.[a-z0-9]{1,5}){0,2}".prop_map(|name| (name.clone(), name));
    prop_oneof![pooled, random]
}

/// A generated line form.
fn line_form() -> impl Strategy<Value = LineForm> {
    prop_oneof![
        Just(LineForm::Mpich),
        (
            0..4usize,
            0..2usize,
            any::<bool>(),
            prop::sample::select(vec!["=", " =", "= ", " = ", "\t=\t"])
        )
            .prop_map(|(slots_key, max_key, max_first, equals)| {
                LineForm::OpenMpi {
                    slots_key,
                    max_key,
                    max_first,
                    equals,
                }
            }),
    ]
}

/// A generated host line (MPICH lines never have max_slots).
fn host_line() -> impl Strategy<Value = GeneratedLine> {
    (
        host_name(),
        prop::option::of(1..1000u32),
        prop::option::of(0..1000u32),
        line_form(),
        (
            "[ \t]{0,2}",
            "[ \t]{1,3}",
            prop::option::of("[ \t]{0,2}#[^\n\r]{0,10}"),
        ),
    )
        .prop_map(|(name, slots, max_extra, form, padding)| {
            let max_slots = match form {
                LineForm::Mpich => None,
                LineForm::OpenMpi { .. } => max_extra.map(|extra| slots.unwrap_or(1) + extra),
            };
            GeneratedLine::Host {
                name,
                slots,
                max_slots,
                form,
                padding,
            }
        })
}

/// Any generated line.
fn generated_line() -> impl Strategy<Value = GeneratedLine> {
    prop_oneof![
        "[ \t]{0,3}".prop_map(GeneratedLine::Blank),
        "[ \t]{0,2}#[^\n\r]{0,20}".prop_map(GeneratedLine::Comment),
        host_line(),
        host_line(),
        host_line(),
    ]
}

/// Writes one generated line as hostfile text.
fn write_line(line: &GeneratedLine) -> String {
    let GeneratedLine::Host {
        name,
        slots,
        max_slots,
        form,
        padding: (lead, separator, comment),
    } = line
    else {
        return match line {
            GeneratedLine::Blank(text) | GeneratedLine::Comment(text) => text.clone(),
            GeneratedLine::Host { .. } => String::new(),
        };
    };
    let mut text = format!("{lead}{}", name.0);
    match form {
        LineForm::Mpich => {
            if let Some(slots) = slots {
                text += &format!(":{slots}");
            }
        }
        LineForm::OpenMpi {
            slots_key,
            max_key,
            max_first,
            equals,
        } => {
            let slots_key = ["slots", "count", "cpu", "cpus"][*slots_key];
            let max_key = ["max_slots", "max-slots"][*max_key];
            let mut options: Vec<String> = Vec::new();
            options.extend(slots.map(|n| format!("{slots_key}{equals}{n}")));
            options.extend(max_slots.map(|n| format!("{max_key}{equals}{n}")));
            if *max_first {
                options.reverse();
            }
            for option in options {
                text += separator;
                text += &option;
            }
        }
    }
    if let Some(comment) = comment {
        text += comment;
    }
    text
}

/// The hosts the generated lines describe, duplicates added up.
fn expected_hosts(lines: &[GeneratedLine]) -> Vec<HostEntry> {
    let mut hosts: Vec<HostEntry> = Vec::new();
    for line in lines {
        let GeneratedLine::Host {
            name,
            slots,
            max_slots,
            ..
        } = line
        else {
            continue;
        };
        let slots = slots.unwrap_or(1);
        match hosts.iter_mut().find(|h| h.name == name.1) {
            Some(existing) => {
                existing.slots += slots;
                existing.max_slots = existing.max_slots.zip(*max_slots).map(|(a, b)| a + b);
            }
            None => hosts.push(host(&name.1, slots, *max_slots)),
        }
    }
    hosts
}

proptest! {
    #[test]
    fn parse_matches_generated_structure_and_round_trips(
        lines in prop::collection::vec(generated_line(), 0..25),
        crlf in any::<bool>(),
    ) {
        let newline = if crlf { "\r\n" } else { "\n" };
        let text: String = lines.iter().map(|l| write_line(l) + newline).collect();
        let expected = expected_hosts(&lines);
        match parse_text(&text) {
            Ok(parsed) => {
                prop_assert_eq!(&parsed.hosts, &expected);
                let reparsed = parse_text(&render(&parsed));
                prop_assert_eq!(reparsed.ok(), Some(parsed));
            }
            Err(HostfileError::Empty { .. }) => prop_assert!(expected.is_empty()),
            Err(error) => prop_assert!(false, "{error} in {text:?}"),
        }
    }

    #[test]
    fn render_then_parse_is_identity(
        entries in prop::collection::vec(
            (host_name(), 1..100_000u32, prop::option::of(0..100_000u32)),
            1..10,
        ),
    ) {
        let mut hosts: Vec<HostEntry> = Vec::new();
        for ((_, name), slots, max_extra) in entries {
            if hosts.iter().all(|h| h.name != name) {
                hosts.push(host(&name, slots, max_extra.map(|extra| slots + extra)));
            }
        }
        let hostfile = Hostfile { hosts };
        let reparsed = parse_text(&render(&hostfile));
        prop_assert_eq!(reparsed.ok(), Some(hostfile));
    }
}
