//! `kalmar-bench-chart`: the side-by-side table of a `scripts/bench.sh`
//! run as an SVG chart, so a user can look rather than read.
//!
//! One panel per fio job; in each, one pair of bars per target: its result
//! divided by the raw device's plain (`--direct=1`) figure and by the raw
//! device's durable (`--sync=1`) figure, both measured in the same run. A
//! line marks 1.0 (as fast as the raw device). IOPS for the 4 KiB jobs,
//! MiB/s for the 1 MiB ones, as in the table.
//!
//!   kalmar-bench-chart RESULTS.json [--out RESULTS.svg]

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Parser;
use plotters::prelude::*;
use serde_json::Value;

/// The jobs in the table's order.
const JOBS: [&str; 6] = [
    "seqwrite-1m",
    "randwrite-4k-qd1",
    "randwrite-4k-qd32",
    "randread-4k-qd1",
    "randread-4k-qd32",
    "seqread-1m",
];

/// Targets in the table's order; `raw` is the baseline itself, so it has
/// no bars. Others found in the results follow, sorted.
const TARGETS: [&str; 5] = [
    "raw-durable",
    "objectstore",
    "store",
    "cluster-size1",
    "cluster-size3",
];

const PANEL_WIDTH_PX: u32 = 560;
const PANEL_HEIGHT_PX: u32 = 340;
const TITLE_HEIGHT_PX: u32 = 60;
const PANELS_PER_ROW: usize = 3;

const PLAIN_COLOUR: RGBColor = RGBColor(0x4c, 0x72, 0xb0);
const DURABLE_COLOUR: RGBColor = RGBColor(0xdd, 0x84, 0x52);

#[derive(Parser)]
#[command(
    about = "Draws a scripts/bench.sh results JSON as an SVG chart of ratios to the raw device"
)]
struct Cli {
    /// The JSON that scripts/bench.sh (benches/bench_report.py) wrote.
    results: PathBuf,
    /// Where the SVG goes (default: the JSON's path with `.svg`).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// One bar pair: a target's ratios to the plain and durable raw figures.
struct Bars {
    target: String,
    ratio_raw: Option<f64>,
    ratio_raw_durable: Option<f64>,
}

struct Panel {
    job: &'static str,
    bars: Vec<Bars>,
}

fn ratio(fig: &Value, key: &str) -> Option<f64> {
    fig.get(key)
        .and_then(Value::as_f64)
        .filter(|r| r.is_finite())
}

fn panels(doc: &Value) -> Result<Vec<Panel>> {
    let results = doc
        .get("results")
        .and_then(Value::as_object)
        .context("no `results` object: is this a scripts/bench.sh JSON?")?;
    let mut targets: Vec<&str> = TARGETS
        .iter()
        .copied()
        .filter(|t| results.contains_key(*t))
        .collect();
    let mut others: Vec<&str> = results
        .keys()
        .map(String::as_str)
        .filter(|t| *t != "raw" && !TARGETS.contains(t))
        .collect();
    others.sort_unstable();
    targets.extend(others);
    let mut out = Vec::new();
    for job in JOBS {
        let bars: Vec<Bars> = targets
            .iter()
            .filter_map(|t| {
                let fig = results.get(*t)?.get(job)?;
                Some(Bars {
                    target: (*t).to_string(),
                    ratio_raw: ratio(fig, "ratio_raw"),
                    ratio_raw_durable: ratio(fig, "ratio_raw_durable"),
                })
            })
            .filter(|b| b.ratio_raw.is_some() || b.ratio_raw_durable.is_some())
            .collect();
        if !bars.is_empty() {
            out.push(Panel { job, bars });
        }
    }
    if out.is_empty() {
        bail!("no ratios in the results: the run needs the `raw` or `raw-durable` target");
    }
    Ok(out)
}

fn title(doc: &Value) -> String {
    let meta = doc.get("meta");
    let field = |k: &str| {
        meta.and_then(|m| m.get(k))
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .unwrap_or_else(|| "?".into())
    };
    format!(
        "Kalmar / raw device (same run)   {}  commit {}  {} CPUs  {} s per job",
        field("date"),
        field("commit"),
        field("cpus"),
        field("runtime_s")
    )
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    panel: &Panel,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let n = panel.bars.len();
    let top = panel
        .bars
        .iter()
        .flat_map(|b| [b.ratio_raw, b.ratio_raw_durable])
        .flatten()
        .fold(1.0f64, f64::max);
    let y_max = (top * 1.15).max(1.2);
    let metric = if panel.job.starts_with("seq") {
        "MiB/s"
    } else {
        "IOPS"
    };
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{} ({metric})", panel.job), ("sans-serif", 18))
        .margin(8)
        .x_label_area_size(40)
        .y_label_area_size(44)
        // plotters' integer range 0..k is inclusive: k + 1 segments. One
        // target still gets two segments (a zero-width range has no scale).
        .build_cartesian_2d((0..(n - 1).max(1)).into_segmented(), 0f64..y_max)
        .map_err(|e| anyhow::anyhow!("chart: {e}"))?;
    let names: Vec<String> = panel.bars.iter().map(|b| b.target.clone()).collect();
    let label = move |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
            names.get(*i).cloned().unwrap_or_default()
        }
        SegmentValue::Last => String::new(),
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&label)
        .x_label_style(("sans-serif", 12))
        .y_desc("ratio to the raw device")
        .draw()
        .map_err(|e| anyhow::anyhow!("mesh: {e}"))?;
    let mut rects = Vec::new();
    let mut texts = Vec::new();
    for (i, b) in panel.bars.iter().enumerate() {
        let halves = [
            (
                b.ratio_raw,
                SegmentValue::Exact(i),
                SegmentValue::CenterOf(i),
                PLAIN_COLOUR,
            ),
            (
                b.ratio_raw_durable,
                SegmentValue::CenterOf(i),
                SegmentValue::Exact(i + 1),
                DURABLE_COLOUR,
            ),
        ];
        for (r, left, right, colour) in halves {
            let Some(r) = r else { continue };
            let mut rect = Rectangle::new([(left.clone(), 0.0), (right, r)], colour.filled());
            rect.set_margin(0, 0, 4, 4);
            rects.push(rect);
            // Above the bar, a little in from its left edge.
            texts.push(
                EmptyElement::at((left, r))
                    + Text::new(
                        format!("{r:.2}"),
                        (8, -16),
                        ("sans-serif", 12).into_font().color(&BLACK),
                    ),
            );
        }
    }
    chart
        .draw_series(rects)
        .map_err(|e| anyhow::anyhow!("bars: {e}"))?;
    chart
        .draw_series(texts)
        .map_err(|e| anyhow::anyhow!("labels: {e}"))?;
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(SegmentValue::Exact(0), 1.0), (SegmentValue::Last, 1.0)],
            BLACK.stroke_width(1),
        )))
        .map_err(|e| anyhow::anyhow!("baseline: {e}"))?;
    Ok(())
}

fn draw(doc: &Value, out: &PathBuf) -> Result<()> {
    let panels = panels(doc)?;
    let cols = panels.len().min(PANELS_PER_ROW);
    let rows = panels.len().div_ceil(PANELS_PER_ROW);
    let width = PANEL_WIDTH_PX * cols as u32;
    let height = TITLE_HEIGHT_PX + PANEL_HEIGHT_PX * rows as u32;
    let root = SVGBackend::new(out, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("svg: {e}"))?;
    let (head, body) = root.split_vertically(TITLE_HEIGHT_PX);
    head.draw(&Text::new(
        title(doc),
        (10, 8),
        ("sans-serif", 16).into_font(),
    ))
    .map_err(|e| anyhow::anyhow!("title: {e}"))?;
    let legend = [
        (PLAIN_COLOUR, "x raw (plain --direct=1)"),
        (
            DURABLE_COLOUR,
            "x raw durable (--sync=1: what Kalmar's acknowledged writes compare with)",
        ),
    ];
    for (k, (colour, text)) in legend.iter().enumerate() {
        let x = 10 + 330 * k as i32;
        head.draw(&Rectangle::new([(x, 34), (x + 14, 48)], colour.filled()))
            .map_err(|e| anyhow::anyhow!("legend: {e}"))?;
        head.draw(&Text::new(
            *text,
            (x + 20, 34),
            ("sans-serif", 13).into_font(),
        ))
        .map_err(|e| anyhow::anyhow!("legend: {e}"))?;
    }
    for (area, panel) in body.split_evenly((rows, cols)).iter().zip(&panels) {
        draw_panel(area, panel)?;
    }
    root.present()
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", out.display()))?;
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let text = std::fs::read_to_string(&cli.results)
        .with_context(|| format!("reading {}", cli.results.display()))?;
    let doc: Value = serde_json::from_str(&text)
        .with_context(|| format!("parsing {}", cli.results.display()))?;
    let out = cli.out.unwrap_or_else(|| cli.results.with_extension("svg"));
    draw(&doc, &out)?;
    println!("{}", out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Value {
        serde_json::json!({
            "meta": {"date": "20260101T000000Z", "commit": "abc", "cpus": 2, "runtime_s": 10},
            "results": {
                "raw": {"randwrite-4k-qd1": {"iops": 100.0, "ratio_raw": 1.0, "ratio_raw_durable": 2.0}},
                "raw-durable": {"randwrite-4k-qd1": {"iops": 50.0, "ratio_raw": 0.5, "ratio_raw_durable": 1.0}},
                "store": {
                    "randwrite-4k-qd1": {"iops": 40.0, "ratio_raw": 0.4, "ratio_raw_durable": 0.8},
                    "seqwrite-1m": {"bw_mib_s": 10.0, "ratio_raw": null, "ratio_raw_durable": null}
                },
                "cluster-size3": {"randwrite-4k-qd1": {"iops": 20.0, "ratio_raw": 0.2, "ratio_raw_durable": 0.4}}
            }
        })
    }

    #[test]
    fn panels_follow_the_table_order_and_skip_missing_ratios() {
        let p = panels(&sample()).unwrap();
        assert_eq!(p.len(), 1, "seqwrite-1m has no ratios, so no panel");
        assert_eq!(p[0].job, "randwrite-4k-qd1");
        let names: Vec<&str> = p[0].bars.iter().map(|b| b.target.as_str()).collect();
        assert_eq!(names, ["raw-durable", "store", "cluster-size3"]);
        assert_eq!(p[0].bars[1].ratio_raw_durable, Some(0.8));
    }

    #[test]
    fn writes_an_svg_with_every_target_named() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("chart.svg");
        draw(&sample(), &out).unwrap();
        let svg = std::fs::read_to_string(&out).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        for name in [
            "raw-durable",
            "store",
            "cluster-size3",
            "randwrite-4k-qd1",
            "0.80",
        ] {
            assert!(svg.contains(name), "{name} missing from the chart");
        }
    }

    #[test]
    fn refuses_results_without_ratios() {
        let doc = serde_json::json!({"results": {"store": {"seqwrite-1m": {"iops": 1.0}}}});
        assert!(panels(&doc).is_err());
    }
}
