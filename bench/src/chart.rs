//! The SVG chart of the report: per row, each allocator's median throughput
//! relative to the best peer (horizontal bars), with the 1.0 (best peer) and
//! 1.15 (issue 7's target) lines. Drawn with plotters' SVG backend.

use plotters::prelude::*;
use plotters::style::text_anchor;

use crate::report::{Measurements, Table};
use crate::suite::Column;

/// Bar colour of a column, by its label, so that a preloaded Debian
/// library has its crate's colour.
fn colour(c: &Column) -> RGBColor {
    match c {
        Column::Worker { .. } => RGBColor(250, 160, 60),
        Column::Floor => BLACK,
        _ => match c.label() {
            "system" => RGBColor(140, 140, 140),
            "mimalloc" => RGBColor(66, 133, 244),
            "jemalloc" => RGBColor(52, 168, 83),
            "tcmalloc" => RGBColor(251, 188, 5),
            "hakmem" => RGBColor(234, 67, 53),
            _ => RGBColor(150, 90, 200),
        },
    }
}

/// The chart of the Rust suite as SVG text.
pub fn svg(m: &Measurements, t: &Table) -> Result<String, String> {
    let names: Vec<&str> = m.rows.iter().map(|r| r.name).collect();
    let title = format!(
        "Median throughput relative to the best peer (higher is better){}",
        if m.quick { " — quick run" } else { "" }
    );
    ratio_bars(&title, &names, &m.columns, t, m.stand_in.is_some())
}

/// Horizontal bars of `t`'s "× best peer", one group per row of `names`
/// and one bar per column (the floor not drawn), with the 1.0 and 1.15
/// lines. `stand_in`: the hakmem column is not hakmem (its legend says so).
pub fn ratio_bars(
    title: &str,
    names: &[&str],
    columns: &[Column],
    t: &Table,
    stand_in: bool,
) -> Result<String, String> {
    let cols: Vec<(usize, &Column)> = columns
        .iter()
        .enumerate()
        .filter(|(_, c)| **c != Column::Floor)
        .collect();
    let n_rows = names.len();
    // The axis covers the drawn bars (not the floor, which is not drawn).
    let xmax = t
        .stats
        .iter()
        .flat_map(|row| cols.iter().filter_map(|(j, _)| row[*j]?.vs_best))
        .fold(1.3_f64, f64::max)
        * 1.05;
    let row_px = 16 * cols.len() as u32 + 12;
    // An empty band under the rows holds the legend: about 16 px per entry.
    let legend_rows = (16.0 * (cols.len() + 2) as f64 + 24.0) / f64::from(row_px);
    let height = 110 + (row_px as f64 * (n_rows as f64 + legend_rows)) as u32;
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (900, height)).into_drawing_area();
        let e = |e: DrawingAreaErrorKind<_>| e.to_string();
        root.fill(&WHITE).map_err(e)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(190)
            .build_cartesian_2d(0f64..xmax, -legend_rows..n_rows as f64)
            .map_err(e)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_desc("× best peer of the row")
            .draw()
            .map_err(e)?;
        // Row i occupies y in [n - 1 - i, n - i); its bars stack downwards.
        let bar_h = 0.85 / cols.len() as f64;
        for (k, (j, c)) in cols.iter().enumerate() {
            let bars: Vec<Rectangle<(f64, f64)>> = (0..n_rows)
                .filter_map(|i| {
                    let v = t.stats[i][*j]?.vs_best?;
                    let top = (n_rows - i) as f64 - 0.075 - k as f64 * bar_h;
                    Some(Rectangle::new(
                        [(0.0, top - bar_h * 0.9), (v, top)],
                        colour(c).filled(),
                    ))
                })
                .collect();
            let col = colour(c);
            let label = match (c, stand_in) {
                (Column::Hakmem, true) => "hakmem (STAND-IN: not hakmem)".to_string(),
                _ => c.label().to_string(),
            };
            chart
                .draw_series(bars)
                .map_err(e)?
                .label(label)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], col.filled()));
        }
        for (x, style, name) in [
            (1.0, BLACK.stroke_width(1), "best peer (1.0)"),
            (1.15, RED.stroke_width(1), "target (1.15)"),
        ] {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, -legend_rows), (x, n_rows as f64)],
                    style,
                )))
                .map_err(e)?
                .label(name)
                .legend(move |(lx, ly)| PathElement::new(vec![(lx, ly), (lx + 12, ly)], style));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(e)?;
        // Row names, right-aligned left of the plot, centred on each row.
        let label = ("sans-serif", 13)
            .into_font()
            .color(&BLACK)
            .pos(text_anchor::Pos::new(
                text_anchor::HPos::Right,
                text_anchor::VPos::Center,
            ));
        for (i, name) in names.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(0.0, (n_rows - i) as f64 - 0.5));
            root.draw(&Text::new(*name, (px - 8, py), label.clone()))
                .map_err(e)?;
        }
        root.present().map_err(e)?;
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Cell;
    use crate::suite;
    use crate::worker::Sample;

    #[test]
    fn chart_names_every_row_and_allocator() {
        let all = suite::rows();
        let rows = suite::select(&all, &["fixed".into()]).unwrap();
        let columns = suite::columns(None);
        let cells = rows
            .iter()
            .map(|_| {
                (0..columns.len())
                    .map(|j| Cell {
                        samples: vec![Sample {
                            ops: 1000,
                            secs: 0.001 * (j + 1) as f64,
                            maxrss_kib: 1024,
                            minflt: 0,
                        }],
                        failures: vec![],
                    })
                    .collect()
            })
            .collect();
        let m = Measurements {
            rows,
            columns,
            cells,
            quick: true,
            rounds: 1,
            stand_in: None,
        };
        let t = Table::compute(&m);
        let s = svg(&m, &t).unwrap();
        assert!(s.starts_with("<svg"));
        for name in [
            "fixed_16",
            "fixed_1024",
            "system",
            "hakmem",
            "target (1.15)",
        ] {
            assert!(s.contains(name), "{name} missing");
        }
        // One bar per row and allocator (4 allocators × 3 rows), beside the
        // background and legend rectangles.
        assert!(s.matches("<rect").count() >= 12);
    }
}
