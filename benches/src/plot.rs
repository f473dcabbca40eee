//! `mpr-bench plot`: draws CSV results as a log-log chart of the value
//! against message size, one series per file, with `plotters`.
//!
//! Runs without the launcher. SVG by default, PNG when the output name ends
//! in `.png`. Text is set in DejaVu Sans, embedded from the `dejavu` crate
//! and rendered by `ab_glyph`, so no system font library is needed.
//!
//! A log axis has no place for 0: rows with size 0 (the first row of a
//! latency run) or a value of 0 are skipped, with a note on stderr.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::csv::{self, CsvError};
use crate::options::PlotOptions;

/// Chart size in pixels (SVG user units).
const SIZE: (u32, u32) = (1024, 640);
/// Font family the chart asks for; DejaVu Sans is registered under it.
const FONT: &str = "sans-serif";
/// Series colours, in order (then repeated).
const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Why a plot could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PlotError {
    /// An input CSV is unusable.
    #[error(transparent)]
    Csv(#[from] CsvError),
    /// More `--label`s than input files.
    #[error("{labels} labels given for {inputs} CSV files")]
    TooManyLabels {
        /// Labels given.
        labels: usize,
        /// Input files given.
        inputs: usize,
    },
    /// Two inputs measure different things (say latency and bandwidth).
    #[error(
        "{} has column `{found}` but {} has `{expected}`: one chart shows one quantity",
        path.display(),
        first.display()
    )]
    MixedColumns {
        /// The first input.
        first: PathBuf,
        /// Its value column.
        expected: String,
        /// The input that differs.
        path: PathBuf,
        /// Its value column.
        found: String,
    },
    /// Every row had size 0 or value 0.
    #[error("nothing to plot: every row has size 0 or value 0, which a log axis cannot show")]
    NothingToPlot,
    /// The embedded font was rejected.
    #[error("the embedded DejaVu Sans font could not be loaded")]
    Font,
    /// Drawing or writing the output failed.
    #[error("{}: {message}", path.display())]
    Draw {
        /// The output file.
        path: PathBuf,
        /// What the backend said.
        message: String,
    },
}

/// One line on the chart.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Series {
    /// Legend text.
    pub(crate) label: String,
    /// Points with positive size and value.
    pub(crate) points: Vec<(f64, f64)>,
}

/// Everything needed to draw.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Chart {
    /// Title above the plot.
    pub(crate) title: String,
    /// Y axis label.
    pub(crate) y_label: String,
    /// The lines.
    pub(crate) series: Vec<Series>,
}

/// Runs `mpr-bench plot`: reads the CSVs and writes the chart.
pub(crate) fn run(options: &PlotOptions) -> Result<(), PlotError> {
    let chart = load(&options.inputs, &options.labels, options.title.as_deref())?;
    write(&chart, &options.output)?;
    println!(
        "mpr-bench plot: wrote {} ({} series)",
        options.output.display(),
        chart.series.len()
    );
    Ok(())
}

/// Reads `inputs` into a chart; labels default to the file stems.
pub(crate) fn load(
    inputs: &[PathBuf],
    labels: &[String],
    title: Option<&str>,
) -> Result<Chart, PlotError> {
    if labels.len() > inputs.len() {
        return Err(PlotError::TooManyLabels {
            labels: labels.len(),
            inputs: inputs.len(),
        });
    }
    let mut first: Option<(&Path, csv::Results)> = None;
    let mut series = Vec::with_capacity(inputs.len());
    for (index, path) in inputs.iter().enumerate() {
        let results = csv::read(path)?;
        match &first {
            Some((first_path, expected)) if expected.column != results.column => {
                return Err(PlotError::MixedColumns {
                    first: first_path.to_path_buf(),
                    expected: expected.column.clone(),
                    path: path.clone(),
                    found: results.column,
                });
            }
            Some(_) => {}
            None => first = Some((path, results.clone())),
        }
        let points: Vec<(f64, f64)> = results
            .rows
            .iter()
            .filter(|&&(size, value)| size > 0 && value > 0.0)
            .map(|&(size, value)| (size as f64, value))
            .collect();
        let skipped = results.rows.len() - points.len();
        if skipped > 0 {
            eprintln!(
                "mpr-bench plot: {}: skipped {skipped} row(s) with size or value 0 (not on a log axis)",
                path.display()
            );
        }
        let label = labels.get(index).cloned().unwrap_or_else(|| {
            path.file_stem().map_or_else(
                || path.display().to_string(),
                |s| s.to_string_lossy().into_owned(),
            )
        });
        series.push(Series { label, points });
    }
    if series.iter().all(|s| s.points.is_empty()) {
        return Err(PlotError::NothingToPlot);
    }
    let (_, results) = first.expect("clap requires at least one input");
    let (y_label, quantity) = match results.metric() {
        Some(metric) => (metric.column().to_owned(), metric.quantity().to_owned()),
        None => (results.column.clone(), results.column.clone()),
    };
    Ok(Chart {
        title: title.map_or_else(|| format!("{quantity} by message size"), str::to_owned),
        y_label,
        series,
    })
}

/// Draws `chart` to `path`: PNG if it ends in `.png`, SVG otherwise.
pub(crate) fn write(chart: &Chart, path: &Path) -> Result<(), PlotError> {
    register_fonts()?;
    let png = path
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("png"));
    let result = if png {
        draw(BitMapBackend::new(path, SIZE).into_drawing_area(), chart)
    } else {
        draw(SVGBackend::new(path, SIZE).into_drawing_area(), chart)
    };
    result.map_err(|message| PlotError::Draw {
        path: path.to_owned(),
        message,
    })
}

/// Registers the embedded font with plotters (once per process).
fn register_fonts() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok());
    if ok { Ok(()) } else { Err(PlotError::Font) }
}

/// Draws on any backend; errors come back as the backend's message.
fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, chart: &Chart) -> Result<(), String> {
    let error = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let points = || chart.series.iter().flat_map(|s| s.points.iter().copied());
    let x_range = padded(points().map(|p| p.0), 1.2);
    let y_range = padded(points().map(|p| p.1), 1.3);
    let x_ticks = size_ticks(&x_range);
    let y_ticks = value_ticks(&y_range);

    root.fill(&WHITE).map_err(error)?;
    let mut plot = ChartBuilder::on(&root)
        .caption(&chart.title, (FONT, 26))
        .margin(16)
        .x_label_area_size(56)
        .y_label_area_size(80)
        .build_cartesian_2d(
            x_range.log_scale().with_key_points(x_ticks),
            y_range.log_scale().with_key_points(y_ticks),
        )
        .map_err(error)?;
    plot.configure_mesh()
        .x_desc("Message size (bytes)")
        .y_desc(chart.y_label.as_str())
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 17))
        .x_label_formatter(&|v| bytes_label(*v))
        .y_label_formatter(&|v| number_label(*v))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.12))
        .draw()
        .map_err(error)?;
    for (index, series) in chart.series.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        let style = color.stroke_width(2);
        plot.draw_series(LineSeries::new(series.points.iter().copied(), style))
            .map_err(error)?
            .label(series.label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
            });
        plot.draw_series(
            series
                .points
                .iter()
                .map(|&p| Circle::new(p, 3, color.filled())),
        )
        .map_err(error)?;
    }
    plot.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(error)?;
    root.present().map_err(error)
}

/// The span of `values` (all positive), widened by `factor` each way and
/// never empty, for a log axis.
fn padded(values: impl Iterator<Item = f64>, factor: f64) -> Range<f64> {
    let (min, max) = values.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let (min, max) = (min / factor, max * factor);
    if max > min {
        min..max
    } else {
        min / 2.0..max * 2.0
    }
}

/// Powers of two within `range`, thinned to at most 16 (every 2nd, 3rd ...).
fn size_ticks(range: &Range<f64>) -> Vec<f64> {
    let powers: Vec<f64> = (0..64)
        .map(|e| 2f64.powi(e))
        .filter(|p| range.contains(p))
        .collect();
    let step = powers.len().div_ceil(16).max(1);
    powers.into_iter().step_by(step).collect()
}

/// 1-2-5 steps of each decade within `range`: only powers of ten when it
/// spans more than five decades, every digit when 1-2-5 gives fewer than 3.
fn value_ticks(range: &Range<f64>) -> Vec<f64> {
    let (low, high) = (
        range.start.log10().floor() as i32,
        range.end.log10().ceil() as i32,
    );
    let ticks = |steps: &[f64]| -> Vec<f64> {
        (low..=high)
            .flat_map(|e| steps.iter().map(move |s| s * 10f64.powi(e)))
            .filter(|v| range.contains(v))
            .collect()
    };
    if high - low > 5 {
        return ticks(&[1.0]);
    }
    let coarse = ticks(&[1.0, 2.0, 5.0]);
    if coarse.len() >= 3 {
        coarse
    } else {
        ticks(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    }
}

/// `1`, `512`, `4K`, `2M`: a byte count as a tick label.
fn bytes_label(value: f64) -> String {
    let bytes = value.round() as u64;
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{}G", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{}M", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{}K", b >> 10),
        b => b.to_string(),
    }
}

/// A tick value with at most three decimals and no trailing zeros.
fn number_label(value: f64) -> String {
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    text.to_owned()
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!("mpr-bench-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn write_csvs(dir: &Path) -> Vec<PathBuf> {
        let mpr = dir.join("mpr.csv");
        let ompi = dir.join("ompi.csv");
        fs::write(
            &mpr,
            "size,latencyus\n0,2.0\n1,2.1\n4,2.2\n1024,3.5\n4194304,900\n",
        )
        .unwrap();
        fs::write(
            &ompi,
            "size,latencyus\n0,0.4\n1,0.5\n4,0.5\n1024,1.2\n4194304,700.5\n",
        )
        .unwrap();
        vec![mpr, ompi]
    }

    #[test]
    fn writes_svg_and_png() {
        let dir = TempDir::new("plot");
        let inputs = write_csvs(&dir.0);
        let chart = load(&inputs, &["mpr".to_owned()], None).unwrap();
        assert_eq!(chart.title, "Latency by message size");
        assert_eq!(chart.y_label, "Latency (us)");
        assert_eq!(chart.series[0].label, "mpr");
        assert_eq!(chart.series[1].label, "ompi", "defaults to the file stem");
        assert_eq!(chart.series[0].points.len(), 4, "size 0 is skipped");

        let svg = dir.0.join("latency.svg");
        write(&chart, &svg).unwrap();
        let text = fs::read_to_string(&svg).unwrap();
        assert!(text.contains("<svg"), "{text:.200}");
        assert!(text.contains("Latency by message size") && text.contains("ompi"));

        let png = dir.0.join("latency.png");
        write(&chart, &png).unwrap();
        assert!(fs::read(&png).unwrap().starts_with(b"\x89PNG"));
    }

    #[test]
    fn rejects_mixed_columns_and_extra_labels() {
        let dir = TempDir::new("plot-errors");
        let mut inputs = write_csvs(&dir.0);
        let labels: Vec<String> = ["a", "b", "c"].map(str::to_owned).into();
        assert!(matches!(
            load(&inputs, &labels, None),
            Err(PlotError::TooManyLabels {
                labels: 3,
                inputs: 2
            })
        ));
        let bw = dir.0.join("bw.csv");
        fs::write(&bw, "size,bandwidthmbs\n1,3.0\n").unwrap();
        inputs.push(bw);
        assert!(matches!(
            load(&inputs, &[], None),
            Err(PlotError::MixedColumns { .. })
        ));
        let zero = dir.0.join("zero.csv");
        fs::write(&zero, "size,latencyus\n0,1.0\n").unwrap();
        assert!(matches!(
            load(&[zero], &[], None),
            Err(PlotError::NothingToPlot)
        ));
    }

    #[test]
    fn tick_labels() {
        assert_eq!(bytes_label(1.0), "1");
        assert_eq!(bytes_label(512.0), "512");
        assert_eq!(bytes_label(4096.0), "4K");
        assert_eq!(bytes_label(4194304.0), "4M");
        assert_eq!(number_label(1000.0), "1000");
        assert_eq!(number_label(0.25), "0.25");
        assert_eq!(size_ticks(&(1.0..4_194_305.0)).len(), 12);
        assert_eq!(size_ticks(&(3.0..20.0)), vec![4.0, 8.0, 16.0]);
        assert_eq!(value_ticks(&(0.15..6.0)), vec![0.2, 0.5, 1.0, 2.0, 5.0]);
        assert_eq!(value_ticks(&(0.5..2e6)).len(), 7, "powers of ten only");
        assert_eq!(value_ticks(&(0.25..0.9)).len(), 6, "0.3 to 0.8");
    }
}
