//! Line charts of benchmark results (PNG), drawn with plotters in the
//! CLI's shipped font, so a machine without fonts draws the same pictures.

use std::{path::Path, sync::Once};

use plotters::prelude::*;

static FONT: &[u8] = include_bytes!("../../cli/assets/fonts/DejaVuSans.ttf");

/// One line of a chart: its legend and its points.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// What a chart shows: its title, axis names, and whether x grows by
/// factors (row counts, drawn on a log scale) rather than steps (minutes).
#[derive(Clone)]
pub struct Chart<'a> {
    pub title: &'a str,
    pub x: &'a str,
    pub y: &'a str,
    pub log_x: bool,
    /// The y axis's range; from 0 to a little above the highest point
    /// unless given (recall reads better from 0.9 to 1).
    pub y_range: Option<(f64, f64)>,
    /// Where the legend goes: a corner the lines leave free.
    pub legend: SeriesLabelPosition,
}

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

type Failure = Box<dyn std::error::Error>;

/// Draws `series` as lines with markers into the PNG at `path`.
pub fn draw(path: &Path, chart: &Chart, series: &[Series]) -> Result<(), Failure> {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
            .map_err(|_| "the shipped font")
            .expect("the shipped font parses");
    });
    // A log scale is drawn as a linear one over log10(x), its labels
    // turned back into counts: plotters' own log axis labels only powers
    // of ten, and a range within one decade gets none.
    let at = |x: f64| if chart.log_x { x.log10() } else { x };
    let series: Vec<Series> = series
        .iter()
        .map(|s| Series {
            name: s.name.clone(),
            points: s.points.iter().map(|&(x, y)| (at(x), y)).collect(),
        })
        .collect();
    let (mut x0, mut x1, mut top) = (f64::MAX, f64::MIN, f64::MIN);
    for &(x, y) in series.iter().flat_map(|s| s.points.iter()) {
        (x0, x1, top) = (x0.min(x), x1.max(x), top.max(y));
    }
    if x0 > x1 {
        return Err("nothing to draw".into());
    }
    let (y0, y1) = chart
        .y_range
        .unwrap_or((0.0, if top > 0.0 { top * 1.08 } else { 1.0 }));
    let pad = ((x1 - x0) * 0.05).max(if chart.log_x { 0.1 } else { 1e-9 });
    let root = BitMapBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut c = ChartBuilder::on(&root)
        .caption(chart.title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(x0 - pad..x1 + pad, y0..y1)?;
    let count = |v: &f64| {
        let n = 10f64.powf(*v);
        // Two significant digits: the ticks fall between round numbers.
        let (v, unit) = match n {
            n if n >= 1e6 => (n / 1e6, "M"),
            n if n >= 1e3 => (n / 1e3, "k"),
            n => (n, ""),
        };
        match v {
            v if v >= 10.0 => format!("{v:.0}{unit}"),
            v => format!("{v:.1}{unit}"),
        }
    };
    let plain = |v: &f64| format!("{v}");
    // At most three decimals, none that are zeros: 20, 0.95, 3000.
    let tidy = |v: &f64| {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    c.configure_mesh()
        .x_desc(chart.x)
        .y_desc(chart.y)
        .x_label_formatter(if chart.log_x { &count } else { &plain })
        .y_label_formatter(&tidy)
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .draw()?;
    for (i, s) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        c.draw_series(LineSeries::new(
            s.points.iter().copied(),
            color.stroke_width(2),
        ))?
        .label(s.name.as_str())
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        c.draw_series(s.points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    }
    c.configure_series_labels()
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .position(chart.legend.clone())
        .draw()?;
    root.present()?;
    Ok(())
}
