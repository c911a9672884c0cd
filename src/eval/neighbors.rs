//! Pictures of what frozen features consider similar: for query images, their nearest
//! neighbours in feature space (cosine) as a PNG grid, each neighbour framed green when its
//! label matches the query's and red when not; and a 2-D t-SNE map of the features coloured by
//! label.

use super::Features;
use crate::data::Dataset;
use crate::error::{Error, Result};
use image::{Rgb, RgbImage};
use std::path::Path;

/// Indices of the `k` rows of `bank` most cosine-similar to row `q` of `queries`, best first.
pub fn nearest(bank: &Features, queries: &Features, q: usize, k: usize) -> Vec<usize> {
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    let qr = queries.row(q);
    let qn = norm(qr);
    let mut sims: Vec<(f32, usize)> = (0..bank.n)
        .map(|i| {
            let r = bank.row(i);
            (
                r.iter().zip(qr).map(|(a, b)| a * b).sum::<f32>() / (norm(r) * qn),
                i,
            )
        })
        .collect();
    sims.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    sims.into_iter().take(k).map(|(_, i)| i).collect()
}

/// Tile side in the picture (images are scaled up by whole pixels to about this size).
const TILE: u32 = 64;
const BORDER: u32 = 3;

fn paste(canvas: &mut RgbImage, data: &Dataset, i: usize, x0: u32, y0: u32, frame: Rgb<u8>) {
    let scale = (TILE / data.height.max(data.width) as u32).max(1);
    let px = data.image(i);
    let (h, w, c) = (data.height, data.width, data.channels);
    for yy in 0..TILE + 2 * BORDER {
        for xx in 0..TILE + 2 * BORDER {
            canvas.put_pixel(x0 + xx, y0 + yy, frame);
        }
    }
    for y in 0..h {
        for x in 0..w {
            let v = |ch: usize| px[ch * h * w + y * w + x];
            let rgb = if c >= 3 {
                Rgb([v(0), v(1), v(2)])
            } else {
                Rgb([v(0); 3])
            };
            for dy in 0..scale {
                for dx in 0..scale {
                    let (cx, cy) = (x as u32 * scale + dx, y as u32 * scale + dy);
                    if cx < TILE && cy < TILE {
                        canvas.put_pixel(x0 + BORDER + cx, y0 + BORDER + cy, rgb);
                    }
                }
            }
        }
    }
}

/// Saves a grid: one row per query (the query framed grey, then its `k` neighbours from
/// `bank_data`, framed green or red by label agreement when labels are known).
pub fn save_grid(
    path: &Path,
    query_data: &Dataset,
    queries: &[usize],
    bank_data: &Dataset,
    neighbours: &[Vec<usize>],
) -> Result<()> {
    let cell = TILE + 2 * BORDER + 4;
    let k = neighbours.iter().map(Vec::len).max().unwrap_or(0) as u32;
    let (w, h) = ((k + 1) * cell + 8, queries.len() as u32 * cell);
    let mut canvas = RgbImage::from_pixel(w.max(1), h.max(1), Rgb([255, 255, 255]));
    for (r, (&q, nn)) in queries.iter().zip(neighbours).enumerate() {
        let y = r as u32 * cell;
        paste(&mut canvas, query_data, q, 0, y, Rgb([90, 90, 90]));
        let ql = query_data.labels.as_ref().map(|l| l[q]);
        for (j, &n) in nn.iter().enumerate() {
            let frame = match (ql, bank_data.labels.as_ref().map(|l| l[n])) {
                (Some(a), Some(b)) if a == b => Rgb([40, 170, 60]),
                (Some(_), Some(_)) => Rgb([210, 40, 40]),
                _ => Rgb([200, 200, 200]),
            };
            paste(
                &mut canvas,
                bank_data,
                n,
                (j as u32 + 1) * cell + 8,
                y,
                frame,
            );
        }
    }
    canvas
        .save(path)
        .map_err(|e| Error::format(path, format!("cannot write the picture: {e}")))
}

/// Exact t-SNE (van der Maaten & Hinton 2008) of the rows of `f` to 2-D: Gaussian
/// affinities with a per-point bandwidth found by bisection to the target `perplexity`,
/// Student-t similarities in the map, gradient descent with momentum and early exaggeration.
/// Quadratic in the number of rows: meant for a few thousand points.
pub fn tsne(f: &Features, perplexity: f64, iterations: usize, seed: u64) -> Vec<[f64; 2]> {
    use rand::{Rng, SeedableRng};
    let n = f.n;
    if n < 2 {
        return vec![[0.0, 0.0]; n];
    }
    let d2 = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| ((x - y) as f64).powi(2))
            .sum::<f64>()
    };
    // Affinities P (symmetrized, normalized).
    let mut p = vec![0.0f64; n * n];
    let target = perplexity.min((n - 1) as f64 / 3.0).max(1.0).ln();
    for i in 0..n {
        let dist: Vec<f64> = (0..n).map(|j| d2(f.row(i), f.row(j))).collect();
        let (mut lo, mut hi, mut beta) = (0.0f64, f64::INFINITY, 1.0f64);
        let dmin = dist
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(_, &v)| v)
            .fold(f64::INFINITY, f64::min);
        for _ in 0..60 {
            let mut sum = 0.0;
            let mut hsum = 0.0;
            for j in (0..n).filter(|&j| j != i) {
                let e = (-(dist[j] - dmin) * beta).exp();
                sum += e;
                hsum += (dist[j] - dmin) * e;
            }
            let entropy = sum.ln() + beta * hsum / sum;
            if (entropy - target).abs() < 1e-5 {
                break;
            }
            if entropy > target {
                lo = beta;
                beta = if hi.is_finite() {
                    (beta + hi) / 2.0
                } else {
                    beta * 2.0
                };
            } else {
                hi = beta;
                beta = (beta + lo) / 2.0;
            }
        }
        let row: Vec<f64> = (0..n)
            .map(|j| {
                if j == i {
                    0.0
                } else {
                    (-(dist[j] - dmin) * beta).exp()
                }
            })
            .collect();
        let s: f64 = row.iter().sum();
        for j in 0..n {
            p[i * n + j] = row[j] / s;
        }
    }
    for i in 0..n {
        for j in i + 1..n {
            let v = ((p[i * n + j] + p[j * n + i]) / (2.0 * n as f64)).max(1e-12);
            p[i * n + j] = v;
            p[j * n + i] = v;
        }
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut y: Vec<[f64; 2]> = (0..n)
        .map(|_| [rng.random_range(-1e-2..1e-2), rng.random_range(-1e-2..1e-2)])
        .collect();
    let mut vel = vec![[0.0f64; 2]; n];
    let mut q = vec![0.0f64; n * n];
    for it in 0..iterations {
        let exaggeration = if it < 100 { 12.0 } else { 1.0 };
        let momentum = if it < 250 { 0.5 } else { 0.8 };
        let mut z = 0.0;
        for i in 0..n {
            for j in i + 1..n {
                let d = (y[i][0] - y[j][0]).powi(2) + (y[i][1] - y[j][1]).powi(2);
                let v = 1.0 / (1.0 + d);
                q[i * n + j] = v;
                q[j * n + i] = v;
                z += 2.0 * v;
            }
        }
        for i in 0..n {
            let mut g = [0.0f64; 2];
            for j in (0..n).filter(|&j| j != i) {
                let w = q[i * n + j];
                let m = (exaggeration * p[i * n + j] - w / z) * w;
                g[0] += 4.0 * m * (y[i][0] - y[j][0]);
                g[1] += 4.0 * m * (y[i][1] - y[j][1]);
            }
            for k in 0..2 {
                vel[i][k] = momentum * vel[i][k] - 200.0 * g[k];
            }
        }
        for i in 0..n {
            y[i][0] += vel[i][0];
            y[i][1] += vel[i][1];
        }
    }
    y
}

/// Saves a scatter plot of 2-D points coloured by label.
pub fn save_map(
    path: &Path,
    title: &str,
    points: &[[f64; 2]],
    labels: &[u32],
    names: &[String],
) -> Result<()> {
    use plotters::prelude::*;
    crate::plot::register_font();
    let err = |e: String| Error::format(path, format!("cannot draw the map: {e}"));
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for p in points {
        x0 = x0.min(p[0]);
        x1 = x1.max(p[0]);
        y0 = y0.min(p[1]);
        y1 = y1.max(p[1]);
    }
    let pad = |a: f64, b: f64| ((b - a) * 0.05).max(1e-6);
    let (px, py) = (pad(x0, x1), pad(y0, y1));
    let root = BitMapBackend::new(path, (800, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .build_cartesian_2d(x0 - px..x1 + px, y0 - py..y1 + py)
        .map_err(|e| err(e.to_string()))?;
    let classes = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
    for c in 0..classes {
        let color = Palette99::pick(c).to_rgba();
        let name = names.get(c).cloned().unwrap_or_else(|| c.to_string());
        chart
            .draw_series(
                points
                    .iter()
                    .zip(labels)
                    .filter(|(_, l)| **l as usize == c)
                    .map(|(p, _)| Circle::new((p[0], p[1]), 2, color.filled())),
            )
            .map_err(|e| err(e.to_string()))?
            .label(name)
            .legend(move |(x, y)| Circle::new((x + 6, y), 4, color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))
}
