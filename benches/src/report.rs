//! Printing results as OSU-style tables, CSV or JSON.

use crate::options::Format;

/// Prints the header of a result table.
pub(crate) fn header(format: Format, title: &str, column: &str) {
    match format {
        Format::Table => {
            println!("# mpr-bench {title}");
            println!("# {:<10}{column:>18}", "Size");
        }
        Format::Csv => println!("size,{}", column.to_lowercase().replace([' ', '(', ')', '/'], "")),
        Format::Json => print!("{{\"benchmark\":\"{title}\",\"unit\":\"{column}\",\"results\":["),
    }
}

/// Prints one row; `first` matters for JSON separators.
pub(crate) fn row(format: Format, size: usize, value: f64, first: bool) {
    match format {
        Format::Table => println!("{size:<12}{value:>18.2}"),
        Format::Csv => println!("{size},{value:.3}"),
        Format::Json => print!("{}{{\"size\":{size},\"value\":{value:.3}}}", if first { "" } else { "," }),
    }
}

/// Ends the output.
pub(crate) fn footer(format: Format) {
    if format == Format::Json {
        println!("]}}");
    }
}
