//! `herald-bench plot`: SVG charts from the JSON lines the scenarios print (a fan-out run's
//! latency distribution, idle memory against connections, flood deliveries over time). A small
//! SVG writer of its own: two chart kinds, no fonts to load, byte-stable output for the repo.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::client::Error;

const W: f64 = 640.0;
const H: f64 = 360.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
const COLORS: [&str; 6] = [
    "#2f6fdf", "#e07b00", "#1e9e5a", "#c23b5b", "#7a4fd0", "#5a6475",
];

/// Titles and axis labels of one chart.
pub struct Frame<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A round step giving about five intervals up to `max` (1, 2 or 5 times a power of ten).
pub fn nice_step(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let m = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * mag
}

/// A tick label: integers as such, thousands as k, small values with the digits they need.
pub fn label(v: f64) -> String {
    if v.abs() >= 1_000_000.0 {
        format!("{}M", trim(v / 1_000_000.0))
    } else if v.abs() >= 1000.0 {
        format!("{}k", trim(v / 1000.0))
    } else {
        trim(v)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn open(out: &mut String, f: &Frame<'_>) {
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" font-family="system-ui, sans-serif" font-size="12">
<rect width="{W}" height="{H}" fill="#ffffff"/>
<text x="{}" y="22" font-size="15" font-weight="600" text-anchor="middle" fill="#1d2430">{}</text>
<text x="{}" y="{}" text-anchor="middle" fill="#5a6475">{}</text>
<text transform="translate(16 {}) rotate(-90)" text-anchor="middle" fill="#5a6475">{}</text>
"##,
        W / 2.0,
        esc(f.title),
        LEFT + (W - LEFT - RIGHT) / 2.0,
        H - 12.0,
        esc(f.x_label),
        TOP + (H - TOP - BOTTOM) / 2.0,
        esc(f.y_label),
    );
}

/// Horizontal grid lines and y tick labels up to `max`; returns the y scale's top.
fn y_axis(out: &mut String, max: f64) -> f64 {
    let step = nice_step(max);
    let top = (max / step).ceil().max(1.0) * step;
    let mut v = 0.0;
    while v <= top + step / 2.0 {
        let y = H - BOTTOM - v / top * (H - TOP - BOTTOM);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#e6e9ee"/><text x="{}" y="{:.1}" text-anchor="end" fill="#5a6475">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            label(v)
        );
        v += step;
    }
    top
}

/// Lines through `(x, y)` points, one per named series, with a legend.
pub fn lines(f: &Frame<'_>, series: &[(String, Vec<(f64, f64)>)]) -> String {
    let mut out = String::new();
    open(&mut out, f);
    let pts = series.iter().flat_map(|(_, p)| p.iter());
    let (x_max, y_max) = pts.fold((0f64, 0f64), |(a, b), (x, y)| (a.max(*x), b.max(*y)));
    let top = y_axis(&mut out, y_max);
    let step = nice_step(x_max);
    let right = (x_max / step).ceil().max(1.0) * step;
    let px = |x: f64| LEFT + x / right * (W - LEFT - RIGHT);
    let py = |y: f64| H - BOTTOM - y / top * (H - TOP - BOTTOM);
    let mut v = 0.0;
    while v <= right + step / 2.0 {
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{}" text-anchor="middle" fill="#5a6475">{}</text>"##,
            px(v),
            H - BOTTOM + 16.0,
            label(v)
        );
        v += step;
    }
    for (i, (name, points)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let path: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let _ = writeln!(
            out,
            r##"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"##,
            path.join(" ")
        );
        let ly = TOP + 6.0 + 16.0 * i as f64;
        let _ = writeln!(
            out,
            r##"<rect x="{}" y="{}" width="14" height="3" fill="{color}"/><text x="{}" y="{}" fill="#1d2430">{}</text>"##,
            LEFT + 12.0,
            ly - 4.0,
            LEFT + 32.0,
            ly,
            esc(name)
        );
    }
    out.push_str("</svg>\n");
    out
}

/// One bar per category, labelled with its value.
pub fn bars(f: &Frame<'_>, categories: &[String], values: &[f64]) -> String {
    let mut out = String::new();
    open(&mut out, f);
    let top = y_axis(&mut out, values.iter().copied().fold(0.0, f64::max));
    let n = categories.len().max(1) as f64;
    let slot = (W - LEFT - RIGHT) / n;
    for (i, (c, v)) in categories.iter().zip(values).enumerate() {
        let x = LEFT + slot * i as f64;
        let h = v / top * (H - TOP - BOTTOM);
        let _ = writeln!(
            out,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="{}"/><text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10" fill="#1d2430">{}</text><text x="{:.1}" y="{}" text-anchor="middle" font-size="10" fill="#5a6475">{}</text>"##,
            x + slot * 0.1,
            H - BOTTOM - h,
            slot * 0.8,
            COLORS[0],
            x + slot / 2.0,
            H - BOTTOM - h - 3.0,
            if *v > 0.0 { trim(*v) } else { String::new() },
            x + slot / 2.0,
            H - BOTTOM + 14.0,
            esc(c)
        );
    }
    out.push_str("</svg>\n");
    out
}

/// The fan-out latency histogram as percentages of deliveries per bucket.
fn fanout_svg(r: &Value) -> Option<String> {
    let h = &r["latency_histogram"];
    let le: Vec<f64> = serde_json::from_value(h["le_ms"].clone()).ok()?;
    let counts: Vec<u64> = serde_json::from_value(h["counts"].clone()).ok()?;
    let total = counts.iter().sum::<u64>().max(1) as f64;
    let mut cats: Vec<String> = le.iter().map(|v| format!("≤{}", trim(*v))).collect();
    cats.push(format!(">{}", trim(*le.last()?)));
    // Trailing empty buckets say nothing.
    let last = counts.iter().rposition(|c| *c > 0).unwrap_or(0) + 1;
    let values: Vec<f64> = counts[..last]
        .iter()
        .map(|c| (*c as f64 / total * 1000.0).round() / 10.0)
        .collect();
    let title = format!(
        "fanout: {} subscribers × {}/s — latency (p50 {} ms, p99 {} ms)",
        r["subscribers"],
        r["rate"],
        trim(r["latency"]["p50_ms"].as_f64().unwrap_or(f64::NAN)),
        trim(r["latency"]["p99_ms"].as_f64().unwrap_or(f64::NAN))
    );
    Some(bars(
        &Frame {
            title: &title,
            x_label: "trigger to delivery, ms (bucket upper bound)",
            y_label: "% of deliveries",
        },
        &cats[..last],
        &values,
    ))
}

/// Deliveries per second over the run, per slot.
fn flood_svg(r: &Value) -> Option<String> {
    let d = &r["deliveries_over_time"];
    let slot = d["slot_ms"].as_f64()?;
    let counts: Vec<u64> = serde_json::from_value(d["counts"].clone()).ok()?;
    let points = counts
        .iter()
        .enumerate()
        .map(|(i, c)| ((i + 1) as f64 * slot / 1000.0, *c as f64 * 1000.0 / slot))
        .collect();
    let title = format!(
        "flood: {} subscribers, {} publishers — deliveries over time",
        r["subscribers"], r["publishers"]
    );
    Some(lines(
        &Frame {
            title: &title,
            x_label: "seconds since the subscribers connected",
            y_label: "deliveries/s",
        },
        &[("deliveries/s".to_string(), points)],
    ))
}

/// Server RSS against open connections, one line per idle run.
fn idle_svg(runs: &[&Value]) -> Option<String> {
    let series: Vec<(String, Vec<(f64, f64)>)> = runs
        .iter()
        .filter_map(|r| {
            let s: Vec<(f64, f64)> = serde_json::from_value(r["rss_samples"].clone()).ok()?;
            let per = r["rss_per_conn_kib"].as_f64().unwrap_or(f64::NAN);
            Some((
                format!("{} connections ({} KiB each)", r["connections"], trim(per)),
                s.into_iter().map(|(n, kib)| (n, kib / 1024.0)).collect(),
            ))
        })
        .collect();
    (!series.is_empty()).then(|| {
        lines(
            &Frame {
                title: "idle: server memory against open connections",
                x_label: "connections open and subscribed",
                y_label: "server RSS, MiB",
            },
            &series,
        )
    })
}

/// Reads every JSON line with a `scenario` from `inputs` and writes the charts into `out`.
pub fn plot(inputs: &[PathBuf], out: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(out)?;
    let mut results = Vec::new();
    for path in inputs {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        for line in text.lines().filter(|l| l.starts_with('{')) {
            if let Ok(v) = serde_json::from_str::<Value>(line) {
                if v["scenario"].is_string() {
                    results.push(v);
                }
            }
        }
    }
    let mut written = Vec::new();
    let mut write = |name: String, svg: Option<String>| -> Result<(), Error> {
        if let Some(svg) = svg {
            let path = out.join(name);
            std::fs::write(&path, svg)?;
            written.push(path);
        }
        Ok(())
    };
    for r in &results {
        match r["scenario"].as_str() {
            Some("fanout") => write(
                format!("fanout-latency-{}x{}.svg", r["subscribers"], r["rate"]),
                fanout_svg(r),
            )?,
            Some("flood") => write(
                format!("flood-throughput-{}.svg", r["subscribers"]),
                flood_svg(r),
            )?,
            _ => {}
        }
    }
    let idle: Vec<&Value> = results.iter().filter(|r| r["scenario"] == "idle").collect();
    write("idle-memory.svg".to_string(), idle_svg(&idle))?;
    if written.is_empty() {
        return Err("no fanout, flood or idle results with plot data in the input".into());
    }
    for p in written {
        println!("wrote {}", p.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn steps_and_labels_are_round() {
        assert_eq!(nice_step(10.0), 2.0);
        assert_eq!(nice_step(7.0), 2.0);
        assert_eq!(nice_step(3.0), 1.0);
        assert_eq!(nice_step(240_000.0), 50_000.0);
        assert_eq!(nice_step(0.0), 1.0);
        assert_eq!(label(50_000.0), "50k");
        assert_eq!(label(1_500_000.0), "1.5M");
        assert_eq!(label(0.25), "0.25");
        assert_eq!(label(3.0), "3");
    }

    #[test]
    fn a_fanout_histogram_becomes_percent_bars() {
        let r = json!({"scenario": "fanout", "subscribers": 10, "rate": 5,
            "latency": {"p50_ms": 0.4, "p99_ms": 1.2},
            "latency_histogram": {"le_ms": [0.5, 1.0, 2.0], "counts": [3, 1, 0, 0]}});
        let svg = fanout_svg(&r).unwrap();
        assert!(svg.starts_with("<svg "), "{svg}");
        assert!(svg.contains(">75<") && svg.contains(">25<"), "{svg}");
        assert!(svg.contains("≤0.5") && svg.contains("≤1<"), "{svg}");
        // Empty trailing buckets are left out.
        assert!(!svg.contains("≤2<") && !svg.contains("&gt;2"), "{svg}");
        assert!(svg.contains("p50 0.4 ms, p99 1.2 ms"));
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn lines_scale_into_the_plot_area() {
        let svg = lines(
            &Frame {
                title: "t <&>",
                x_label: "x",
                y_label: "y",
            },
            &[("a".into(), vec![(0.0, 0.0), (10.0, 10.0)])],
        );
        assert!(svg.contains("t &lt;&amp;&gt;"));
        // (0, 0) at the bottom left of the plot area, (10, 10) at the top right.
        assert!(
            svg.contains(&format!(
                "points=\"{LEFT:.1},{:.1} {:.1},{TOP:.1}\"",
                H - BOTTOM,
                W - RIGHT
            )),
            "{svg}"
        );
    }

    #[test]
    fn flood_and_idle_results_plot() {
        let flood = json!({"scenario": "flood", "subscribers": 2, "publishers": 1,
            "deliveries_over_time": {"slot_ms": 250, "counts": [10, 20]}});
        let svg = flood_svg(&flood).unwrap();
        assert!(svg.contains("deliveries/s"));
        let idle = json!({"scenario": "idle", "connections": 2, "rss_per_conn_kib": 3.5,
            "rss_samples": [[0, 1024], [2, 2048]]});
        let svg = idle_svg(&[&idle]).unwrap();
        assert!(svg.contains("2 connections (3.5 KiB each)"));
        assert!(idle_svg(&[&flood]).is_none());
    }
}
