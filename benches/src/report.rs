//! Printing results as OSU-style tables, CSV or JSON.
//!
//! [`Metric`] is the one place where a result column gets its names: the
//! table header, the CSV header (`size,<name>`) that `mpr-bench plot` and
//! `compare/run.sh` read back, and the JSON unit. `compare/mpi_bench.c`
//! prints the same CSV names.

use crate::options::Format;

/// What a benchmark reports per message size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Metric {
    /// Time per operation in microseconds (lower is better).
    Latency,
    /// Megabytes (10^6 bytes) per second (higher is better).
    Bandwidth,
    /// Time per collective operation in microseconds, averaged over ranks
    /// (lower is better).
    AvgLatency,
}

impl Metric {
    /// Every metric, for parsing.
    pub(crate) const ALL: [Metric; 3] = [Metric::Latency, Metric::Bandwidth, Metric::AvgLatency];

    /// Column heading in tables, and the axis label of plots.
    pub(crate) fn column(self) -> &'static str {
        match self {
            Metric::Latency => "Latency (us)",
            Metric::Bandwidth => "Bandwidth (MB/s)",
            Metric::AvgLatency => "Avg Latency(us)",
        }
    }

    /// Name of the value column in CSV headers.
    pub(crate) fn csv_name(self) -> &'static str {
        match self {
            Metric::Latency => "latencyus",
            Metric::Bandwidth => "bandwidthmbs",
            Metric::AvgLatency => "avglatencyus",
        }
    }

    /// What is measured, in words (plot titles).
    pub(crate) fn quantity(self) -> &'static str {
        match self {
            Metric::Latency => "Latency",
            Metric::Bandwidth => "Bandwidth",
            Metric::AvgLatency => "Average latency",
        }
    }

    /// The metric a CSV value column names, if any.
    pub(crate) fn from_csv_name(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.csv_name() == name)
    }
}

/// Prints the header of a result table.
pub(crate) fn header(format: Format, title: &str, metric: Metric) {
    header_with_extremes(format, title, metric, false);
}

/// Prints the header of a result table, with min/max columns if `extremes`
/// (collectives with `-f`, as OSU's full output), and the iteration time
/// (rank 0's wall time of the timed loop, collective and barrier, per
/// iteration: it counts the time ranks wait for the slowest, which the
/// average over ranks leaves out).
pub(crate) fn header_with_extremes(format: Format, title: &str, metric: Metric, extremes: bool) {
    let column = metric.column();
    match format {
        Format::Table => {
            println!("# mpr-bench {title}");
            let more = if extremes {
                format!(
                    "{:>18}{:>18}{:>18}",
                    "Min Latency(us)", "Max Latency(us)", "Iteration(us)"
                )
            } else {
                String::new()
            };
            println!("# {:<10}{column:>18}{more}", "Size");
        }
        Format::Csv => println!(
            "size,{}{}",
            metric.csv_name(),
            if extremes {
                ",minlatencyus,maxlatencyus,iterationus"
            } else {
                ""
            }
        ),
        Format::Json => print!("{{\"benchmark\":\"{title}\",\"unit\":\"{column}\",\"results\":["),
    }
}

/// Prints one row; `first` matters for JSON separators.
pub(crate) fn row(format: Format, size: usize, value: f64, first: bool) {
    match format {
        Format::Table => println!("{size:<12}{value:>18.2}"),
        Format::Csv => println!("{size},{value:.3}"),
        Format::Json => print!(
            "{}{{\"size\":{size},\"value\":{value:.3}}}",
            if first { "" } else { "," }
        ),
    }
}

/// Prints one row, with the minimum, maximum and iteration time if given.
pub(crate) fn row_with_extremes(
    format: Format,
    size: usize,
    value: f64,
    extremes: Option<(f64, f64, f64)>,
    first: bool,
) {
    let Some((low, high, iteration)) = extremes else {
        return row(format, size, value, first);
    };
    match format {
        Format::Table => {
            println!("{size:<12}{value:>18.2}{low:>18.2}{high:>18.2}{iteration:>18.2}")
        }
        Format::Csv => println!("{size},{value:.3},{low:.3},{high:.3},{iteration:.3}"),
        Format::Json => print!(
            "{}{{\"size\":{size},\"value\":{value:.3},\"min\":{low:.3},\"max\":{high:.3},\"iteration\":{iteration:.3}}}",
            if first { "" } else { "," }
        ),
    }
}

/// Ends the output.
pub(crate) fn footer(format: Format) {
    if format == Format::Json {
        println!("]}}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_names_round_trip_and_match_the_c_program() {
        for metric in Metric::ALL {
            assert_eq!(Metric::from_csv_name(metric.csv_name()), Some(metric));
        }
        let c = include_str!("../compare/mpi_bench.c");
        for metric in Metric::ALL {
            assert!(
                c.contains(metric.csv_name()),
                "mpi_bench.c prints {}",
                metric.csv_name()
            );
        }
        assert_eq!(Metric::from_csv_name("size"), None);
    }
}
