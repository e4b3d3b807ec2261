//! The time part of `scripts/bench_scale.sh`: long ingests and a mixed
//! soak are run by `imgsearch bench`; this makes their images and draws
//! their reports.
//!
//!     time-bench variants OUT COUNT PHOTO...
//!         COUNT distinct JPEGs made from the photos (crops, flips,
//!         re-encodes; imgsearch_tests::variants) written into OUT.
//!     time-bench chart OUT_DIR NAME=REPORT...
//!         draws `imgsearch bench --json` reports' timelines as PNG charts:
//!         time_throughput.png (images/s of every report), time_latency.png
//!         (search p50/p99 of the reports that searched) and
//!         time_rss_NAME.png (each watched process of that report).

use std::path::{Path, PathBuf};

use imgsearch_tests::{
    charts::{draw, Chart, Series},
    variants,
};
use plotters::chart::SeriesLabelPosition;
use serde_json::Value;

fn variants(args: &[String]) {
    let [out, count, photos @ ..] = args else {
        panic!("usage: time-bench variants OUT COUNT PHOTO...");
    };
    let photos: Vec<PathBuf> = photos.iter().map(PathBuf::from).collect();
    let sources = variants::sources(&photos);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    variants::write(
        &sources,
        Path::new(out),
        count.parse().expect("COUNT"),
        threads,
    );
}

/// A report's timeline as points against minutes from its start; a last
/// interval shorter than half the others (the run's final seconds) is left
/// out, as its rates would stand for almost nothing.
fn over_time(report: &Value, f: impl Fn(&Value) -> Option<f64>) -> Vec<(f64, f64)> {
    let step = report["interval_seconds"]
        .as_f64()
        .expect("interval_seconds");
    let mut previous_end = 0.0;
    report["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter_map(|i| {
            let end = i["end_s"].as_f64()?;
            let span = end - std::mem::replace(&mut previous_end, end);
            (span >= step / 2.0).then_some((end / 60.0, f(i)?))
        })
        .collect()
}

fn legend(name: &str) -> String {
    name.replace('-', " ")
}

fn chart(args: &[String]) {
    let [out, reports @ ..] = args else {
        panic!("usage: time-bench chart OUT_DIR NAME=REPORT...");
    };
    let out = Path::new(out);
    let reports: Vec<(String, Value)> = reports
        .iter()
        .map(|r| {
            let (name, path) = r.split_once('=').expect("NAME=REPORT");
            let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
            (
                name.to_string(),
                serde_json::from_slice(&bytes).expect("a bench report"),
            )
        })
        .collect();
    let minutes = "minutes from the start";
    let throughput: Vec<Series> = reports
        .iter()
        .map(|(name, r)| Series {
            name: legend(name),
            points: over_time(r, |i| i["insert"]["per_second"].as_f64()),
        })
        .collect();
    let chart = Chart {
        title: "Ingest throughput over time",
        x: minutes,
        y: "images stored per second",
        log_x: false,
        y_range: None,
        legend: SeriesLabelPosition::LowerRight,
    };
    draw(&out.join("time_throughput.png"), &chart, &throughput).expect("draw throughput");

    let mut latency = Vec::new();
    for (name, r) in reports
        .iter()
        .filter(|(_, r)| r["search"]["ok"].as_u64() > Some(0))
    {
        for p in ["p50_ms", "p99_ms"] {
            latency.push(Series {
                name: format!("{} search {}", legend(name), &p[..3]),
                points: over_time(r, |i| i["search"][p].as_f64()),
            });
        }
    }
    if !latency.is_empty() {
        let chart = Chart {
            title: "Search latency over time, under ingest",
            x: minutes,
            y: "latency (ms)",
            log_x: false,
            y_range: None,
            legend: SeriesLabelPosition::UpperRight,
        };
        draw(&out.join("time_latency.png"), &chart, &latency).expect("draw latency");
    }

    for (name, r) in &reports {
        let processes = r["processes"].as_array().expect("processes");
        let rss: Vec<Series> = processes
            .iter()
            .enumerate()
            .map(|(k, p)| Series {
                name: p["name"].as_str().unwrap_or("?").to_string(),
                points: over_time(r, |i| i["processes"][k]["rss_mib"].as_f64()),
            })
            .collect();
        let title = format!("Resident memory over time: {}", legend(name));
        let chart = Chart {
            title: &title,
            x: minutes,
            y: "RSS (MiB)",
            log_x: false,
            y_range: None,
            legend: SeriesLabelPosition::UpperLeft,
        };
        draw(&out.join(format!("time_rss_{name}.png")), &chart, &rss).expect("draw RSS");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("variants") => variants(rest),
        Some("chart") => chart(rest),
        _ => panic!("usage: time-bench variants|chart ..."),
    }
}
