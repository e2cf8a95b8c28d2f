//! The report's charts, as SVG text (plotters' SVG backend: no font files, no raster).

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use tocsin_core::Timestamp;

const SIZE: (u32, u32) = (900, 320);

fn failed(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing a chart: {e}")
}

/// One line per series over time buckets of `bucket_ms` (the six largest series, the rest
/// summed as "other").
pub fn lines(
    title: &str,
    series: &BTreeMap<String, BTreeMap<i64, u64>>,
    bucket_ms: i64,
) -> Result<String> {
    let mut ranked: Vec<(&String, u64)> = series
        .iter()
        .map(|(name, points)| (name, points.values().sum()))
        .collect();
    ranked.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(y.0)));
    let mut shown: Vec<(String, BTreeMap<i64, u64>)> = ranked
        .iter()
        .take(6)
        .map(|(name, _)| ((*name).clone(), series[*name].clone()))
        .collect();
    if ranked.len() > 6 {
        let mut other: BTreeMap<i64, u64> = BTreeMap::new();
        for (name, _) in &ranked[6..] {
            for (t, n) in &series[*name] {
                *other.entry(*t).or_default() += n;
            }
        }
        shown.push(("other".into(), other));
    }
    let first = series.values().flat_map(|p| p.keys()).min().copied();
    let last = series.values().flat_map(|p| p.keys()).max().copied();
    let max = shown
        .iter()
        .flat_map(|(_, p)| p.values())
        .max()
        .copied()
        .unwrap_or(0);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(failed)?;
        let (Some(first), Some(last)) = (first, last) else {
            root.titled(&format!("{title}: no data"), ("sans-serif", 18))
                .map_err(failed)?;
            root.present().map_err(failed)?;
            drop(root);
            return Ok(svg);
        };
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(first..last + bucket_ms, 0u64..max + max / 10 + 1)
            .map_err(failed)?;
        let daily = bucket_ms >= 86_400_000;
        chart
            .configure_mesh()
            .x_labels(8)
            .x_label_formatter(&|t| {
                let (y, m, d, h, min, _) = Timestamp(*t).civil();
                if daily {
                    format!("{y:04}-{m:02}-{d:02}")
                } else {
                    format!("{m:02}-{d:02} {h:02}:{min:02}")
                }
            })
            .y_desc("detections")
            .draw()
            .map_err(failed)?;
        for (i, (name, points)) in shown.iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            // Every bucket of the range, zero where nothing happened.
            let mut t = first;
            let mut line = Vec::new();
            while t <= last {
                line.push((t, points.get(&t).copied().unwrap_or(0)));
                t += bucket_ms;
            }
            chart
                .draw_series(LineSeries::new(line, colour.stroke_width(2)))
                .map_err(failed)?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(failed)?;
        root.present().map_err(failed)?;
    }
    Ok(svg)
}

/// A vertical bar per (label, count), in the given order.
pub fn bars(title: &str, data: &[(String, u64)]) -> Result<String> {
    let data: Vec<&(String, u64)> = data.iter().take(20).collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(failed)?;
        if data.is_empty() {
            root.titled(&format!("{title}: no data"), ("sans-serif", 18))
                .map_err(failed)?;
            root.present().map_err(failed)?;
            drop(root);
            return Ok(svg);
        }
        let max = data.iter().map(|(_, n)| *n).max().unwrap_or(0);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(60)
            .y_label_area_size(50)
            .build_cartesian_2d(
                (0..data.len() - 1).into_segmented(),
                0u64..max + max / 10 + 1,
            )
            .map_err(failed)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(data.len())
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => data.get(*i).map_or(String::new(), |d| d.0.clone()),
                _ => String::new(),
            })
            .draw()
            .map_err(failed)?;
        // One rectangle per bar, in the data's order (plotters' Histogram sums its data in
        // a HashMap, so its drawing order, and the SVG's bytes, would change run to run).
        let x = chart.as_coord_spec().x_spec().clone();
        let bars = data.iter().enumerate().filter_map(|(i, (_, n))| {
            let (left, right) = (x.from_index(i)?, x.from_index(i + 1)?);
            let mut bar = Rectangle::new([(left, *n), (right, 0)], Palette99::pick(4).filled());
            bar.set_margin(0, 0, 8, 8);
            Some(bar)
        });
        chart.draw_series(bars).map_err(failed)?;
        root.present().map_err(failed)?;
    }
    Ok(svg)
}
