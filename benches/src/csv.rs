//! Reading back the CSVs that `--csv` writes (and `compare/mpi_bench.c`
//! prints): a `size,<value>` header, then one `size,value` row per message
//! size. Extra columns (the min/max latencies of collectives with `-f`) are
//! allowed when every row has as many fields as the header; only the first
//! value column is read. Blank lines and lines starting with `#` are
//! skipped, so a file may carry comments; anything else that is not a row
//! is an error naming the file and the line.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::report::Metric;

/// A CSV file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CsvError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file holds no header line.
    #[error("{}: empty, expected a `size,<value>` header", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The first line is not `size,<name>`.
    #[error("{}:{line}: expected a `size,<value>` header, found {found:?}", path.display())]
    BadHeader {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The line as read.
        found: String,
    },
    /// A line after the header is not a `size,value` row.
    #[error("{}:{line}: {reason} in {found:?}", path.display())]
    BadRow {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The line as read.
        found: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The header is not followed by any row.
    #[error("{}: no rows after the header", path.display())]
    NoRows {
        /// The file.
        path: PathBuf,
    },
}

/// The rows of one CSV file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Results {
    /// Name of the value column, as in the header.
    pub(crate) column: String,
    /// `(message size in bytes, value)`, in file order.
    pub(crate) rows: Vec<(u64, f64)>,
}

impl Results {
    /// The metric the value column names, if it is one of ours.
    pub(crate) fn metric(&self) -> Option<Metric> {
        Metric::from_csv_name(&self.column)
    }
}

/// Reads and parses the CSV at `path`.
pub(crate) fn read(path: &Path) -> Result<Results, CsvError> {
    let text = fs::read_to_string(path).map_err(|source| CsvError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text)
}

/// Parses CSV `text`; `path` only names the file in errors.
pub(crate) fn parse(path: &Path, text: &str) -> Result<Results, CsvError> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'));
    let Some((line, header)) = lines.next() else {
        return Err(CsvError::Empty {
            path: path.to_owned(),
        });
    };
    let names = fields(header);
    let column = match names.as_slice() {
        ["size", column, rest @ ..] if !column.is_empty() && !rest.contains(&"") => {
            (*column).to_owned()
        }
        _ => {
            return Err(CsvError::BadHeader {
                path: path.to_owned(),
                line,
                found: header.to_owned(),
            });
        }
    };
    let mut rows = Vec::new();
    for (line, text) in lines {
        let bad = |reason| CsvError::BadRow {
            path: path.to_owned(),
            line,
            found: text.to_owned(),
            reason,
        };
        let row = fields(text);
        let [size, value, ..] = row.as_slice() else {
            return Err(bad("expected the fields `size,value`"));
        };
        if row.len() != names.len() {
            return Err(bad("field count differs from the header's"));
        }
        let size = size
            .parse::<u64>()
            .map_err(|_| bad("size is not a byte count"))?;
        let value = value
            .parse::<f64>()
            .map_err(|_| bad("value is not a number"))?;
        if !value.is_finite() || value < 0.0 {
            return Err(bad("value is not a finite, non-negative number"));
        }
        rows.push((size, value));
    }
    if rows.is_empty() {
        return Err(CsvError::NoRows {
            path: path.to_owned(),
        });
    }
    Ok(Results { column, rows })
}

/// The trimmed comma-separated fields of `line`.
fn fields(line: &str) -> Vec<&str> {
    line.split(',').map(str::trim).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Results, CsvError> {
        parse(Path::new("x.csv"), text)
    }

    #[test]
    fn parses_rows_comments_and_crlf() {
        let results =
            parse_str("# from mpr\r\nsize,latencyus\r\n0,1.5\r\n\r\n1, 2.25\r\n4194304,800\r\n")
                .unwrap();
        assert_eq!(results.column, "latencyus");
        assert_eq!(results.metric(), Some(Metric::Latency));
        assert_eq!(results.rows, vec![(0, 1.5), (1, 2.25), (4_194_304, 800.0)]);
    }

    #[test]
    fn unknown_column_is_kept_without_a_metric() {
        let results = parse_str("size,messagespers\n8,3\n").unwrap();
        assert_eq!(results.column, "messagespers");
        assert_eq!(results.metric(), None);
    }

    #[test]
    fn extra_columns_are_allowed_and_ignored() {
        let text = "size,avglatencyus,minlatencyus,maxlatencyus\n4,2.5,2.0,3.0\n8,3.5,3.0,4.0\n";
        let results = parse_str(text).unwrap();
        assert_eq!(results.column, "avglatencyus");
        assert_eq!(results.metric(), Some(Metric::AvgLatency));
        assert_eq!(results.rows, vec![(4, 2.5), (8, 3.5)]);
        assert!(matches!(
            parse_str("size,a,b\n4,2.5\n"),
            Err(CsvError::BadRow { line: 2, .. })
        ));
        assert!(matches!(
            parse_str("size,a,\n4,2.5,1\n"),
            Err(CsvError::BadHeader { line: 1, .. })
        ));
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let error = parse_str("size,bandwidthmbs\n1,2\n2,fast\n").unwrap_err();
        assert!(
            matches!(error, CsvError::BadRow { line: 3, .. }),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "x.csv:3: value is not a number in \"2,fast\""
        );

        let error = parse_str("\n# c\nSize Latency\n").unwrap_err();
        assert!(
            matches!(error, CsvError::BadHeader { line: 3, .. }),
            "{error:?}"
        );

        for (text, reason) in [
            ("size,v\n-1,2\n", "size is not a byte count"),
            ("size,v\n1,2,3\n", "field count differs from the header's"),
            ("size,v\n12\n", "expected the fields `size,value`"),
            (
                "size,v\n1,NaN\n",
                "value is not a finite, non-negative number",
            ),
            (
                "size,v\n1,-3\n",
                "value is not a finite, non-negative number",
            ),
        ] {
            match parse_str(text) {
                Err(CsvError::BadRow {
                    line: 2, reason: r, ..
                }) => assert_eq!(r, reason, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
        assert!(matches!(parse_str(""), Err(CsvError::Empty { .. })));
        assert!(matches!(
            parse_str("size,v\n"),
            Err(CsvError::NoRows { .. })
        ));
        assert!(matches!(
            parse_str("size,\n1,2\n"),
            Err(CsvError::BadHeader { .. })
        ));
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let error = read(Path::new("/nonexistent/mpr-bench.csv")).unwrap_err();
        assert!(matches!(error, CsvError::Read { .. }));
        assert!(
            error
                .to_string()
                .starts_with("/nonexistent/mpr-bench.csv: cannot read")
        );
    }
}
