//! PNG line charts (plotters, with the DejaVu Sans font embedded so no system font is needed).

use crate::error::{Error, Result};
use std::path::Path;

/// A named series of `(x, y)` points.
pub type Series = (String, Vec<(f64, f64)>);

static FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");

/// Makes the embedded font plotters' `sans-serif` (idempotent).
pub fn register_font() {
    let _ = plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, FONT);
}

/// Draws `series` as lines with points to a 900 x 560 PNG at `path`. With `x_labels`, x
/// values are indices into it and the axis shows the labels (one tick per index).
pub fn line_chart(
    path: &Path,
    title: &str,
    axes: (&str, &str),
    series: &[Series],
    x_labels: Option<&[String]>,
) -> Result<()> {
    use plotters::prelude::*;
    register_font();
    let err = |e: String| Error::format(path, format!("cannot draw the plot: {e}"));
    let points = || series.iter().flat_map(|s| s.1.iter());
    let (x0, x1) = match x_labels {
        Some(l) => (-0.5, l.len() as f64 - 0.5),
        None => (
            points().map(|p| p.0).fold(0.0f64, f64::min),
            points().map(|p| p.0).fold(1e-9f64, f64::max) * 1.05,
        ),
    };
    let y_min = points().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let y_max = points().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let (y0, y1) = if y_min.is_finite() {
        (y_min.floor() - 1.0, y_max.ceil() + 1.0)
    } else {
        (0.0, 1.0)
    };
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| err(e.to_string()))?;
    let label_of = |x: &f64| match x_labels {
        Some(l) => {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < l.len() {
                l[i as usize].clone()
            } else {
                String::new()
            }
        }
        None => format!("{x:.0}"),
    };
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(axes.0)
        .y_desc(axes.1)
        .label_style(("sans-serif", 14))
        .x_label_formatter(&label_of);
    if let Some(l) = x_labels {
        mesh.x_labels(l.len() * 2 + 1);
    }
    mesh.draw().map_err(|e| err(e.to_string()))?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
            .map_err(|e| err(e.to_string()))?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(|e| err(e.to_string()))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))
}

/// Draws one curve (`points`, x ascending) as a `width` x `height` line chart and returns it
/// PNG-encoded: for training curves of thousands of points (no markers; both axes fitted to
/// the data with a 5 % margin).
pub fn curve_png(
    title: &str,
    axes: (&str, &str),
    points: &[(f64, f64)],
    (width, height): (u32, u32),
) -> Result<Vec<u8>> {
    use plotters::prelude::*;
    register_font();
    let err = |e: String| Error::Config(format!("cannot draw the plot '{title}': {e}"));
    let finite: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .collect();
    let range = |v: &mut dyn Iterator<Item = f64>| {
        let (lo, hi) = v.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        });
        if !lo.is_finite() {
            (0.0, 1.0)
        } else {
            let pad = ((hi - lo) * 0.05).max(hi.abs().max(1e-12) * 1e-3);
            (lo - pad, hi + pad)
        }
    };
    let (x0, x1) = range(&mut finite.iter().map(|p| p.0));
    let (y0, y1) = range(&mut finite.iter().map(|p| p.1));
    // Enough decimals to tell the y ticks apart (about ten across the range).
    let decimals = (1.0 - (y1 - y0).log10().floor()).clamp(0.0, 8.0) as usize;
    let mut buf = vec![255u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| err(e.to_string()))?;
        chart
            .configure_mesh()
            .x_desc(axes.0)
            .y_desc(axes.1)
            .label_style(("sans-serif", 13))
            .y_label_formatter(&|y| format!("{y:.decimals$}"))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()
            .map_err(|e| err(e.to_string()))?;
        let color = Palette99::pick(0).to_rgba();
        chart
            .draw_series(LineSeries::new(
                finite.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| err(e.to_string()))?;
        if finite.len() <= 40 {
            chart
                .draw_series(finite.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(|e| err(e.to_string()))?;
        }
        root.present().map_err(|e| err(e.to_string()))?;
    }
    let img = image::RgbImage::from_raw(width, height, buf).expect("buffer of the chart's size");
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| err(e.to_string()))?;
    Ok(png)
}
