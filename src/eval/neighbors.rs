//! Pictures of what frozen features consider similar: for query images, their nearest
//! neighbours in feature space (cosine) as a PNG grid, each neighbour framed green when its
//! label matches the query's and red when not; and a 2-D t-SNE map of the features coloured by
//! label.

use super::Features;
use crate::data::Dataset;
use crate::error::{Error, Result};
use image::{Rgb, RgbImage};
use std::path::Path;

fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12)
}

/// Indices of the `k` rows of `bank` most cosine-similar to row `q` of `queries`, best first.
pub fn nearest(bank: &Features, queries: &Features, q: usize, k: usize) -> Vec<usize> {
    most_similar(bank, queries.row(q), k, None)
        .into_iter()
        .map(|(i, _)| i)
        .collect()
}

/// The `k` rows of `bank` most cosine-similar to `query`, best first (ties by index), with
/// their cosine similarity; row `exclude` (the query itself, when it is in the bank) is left
/// out.
pub fn most_similar(
    bank: &Features,
    query: &[f32],
    k: usize,
    exclude: Option<usize>,
) -> Vec<(usize, f32)> {
    let qn = norm(query);
    let mut sims: Vec<(usize, f32)> = (0..bank.n)
        .filter(|&i| Some(i) != exclude)
        .map(|i| {
            let r = bank.row(i);
            let dot = r.iter().zip(query).map(|(a, b)| a * b).sum::<f32>();
            (i, dot / (norm(r) * qn))
        })
        .collect();
    sims.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    sims.truncate(k);
    sims
}

/// Every pair of rows `(i, j)`, `i < j`, whose cosine similarity is at least `threshold`,
/// most similar first: near-duplicate images. The Gram matrix of the normalized rows is
/// computed a block of 256 rows at a time (memory stays at 256 x n), by GEMM.
pub fn near_duplicates(f: &Features, threshold: f32) -> Vec<(usize, usize, f32)> {
    let (n, d) = (f.n, f.dim);
    let mut unit = f.data.clone();
    for row in unit.chunks_mut(d.max(1)) {
        let s = 1.0 / norm(row);
        row.iter_mut().for_each(|x| *x *= s);
    }
    const BLOCK: usize = 256;
    let mut pairs = Vec::new();
    let mut gram = vec![0.0f32; BLOCK * n];
    for start in (0..n).step_by(BLOCK) {
        let m = BLOCK.min(n - start);
        // gram[m, n] = unit[start.., :] · unitᵀ
        crate::linalg::matmul(
            (m, n, d),
            &mut gram,
            n,
            false,
            &unit[start * d..],
            (d, 1),
            &unit,
            (1, d),
        );
        for r in 0..m {
            let i = start + r;
            for j in i + 1..n {
                let s = gram[r * n + j];
                if s >= threshold {
                    pairs.push((i, j, s.min(1.0)));
                }
            }
        }
    }
    pairs.sort_by(|a, b| b.2.total_cmp(&a.2).then((a.0, a.1).cmp(&(b.0, b.1))));
    pairs
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force in f64: every pair, its cosine, kept when at least `t`.
    fn pairs_f64(f: &Features, t: f64) -> Vec<(usize, usize)> {
        let cos = |i: usize, j: usize| {
            let (a, b) = (f.row(i), f.row(j));
            let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
            let n = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            dot / (n(a) * n(b))
        };
        let mut out = vec![];
        for i in 0..f.n {
            for j in i + 1..f.n {
                if cos(i, j) >= t {
                    out.push((i, j));
                }
            }
        }
        out
    }

    #[test]
    fn near_duplicates_match_brute_force_across_blocks() {
        // 300 rows (two GEMM blocks), 6-d; rows 10 and 290 (different blocks) and 20 and 21
        // are copies up to scale, the rest random.
        let (n, d) = (300, 6);
        let mut data = crate::nn::test_values(n * d, 7);
        for c in 0..d {
            data[290 * d + c] = 2.5 * data[10 * d + c];
            data[21 * d + c] = data[20 * d + c];
        }
        let f = Features { data, n, dim: d };
        let found = near_duplicates(&f, 0.999);
        let mut got: Vec<(usize, usize)> = found.iter().map(|&(i, j, _)| (i, j)).collect();
        got.sort();
        assert_eq!(got, pairs_f64(&f, 0.999));
        assert!(got.contains(&(10, 290)) && got.contains(&(20, 21)));
        assert!(found.iter().all(|p| (p.2 - 1.0).abs() < 1e-3));
        // A lower threshold: the same pairs as brute force (away from the boundary).
        let mut loose: Vec<(usize, usize)> = near_duplicates(&f, 0.9)
            .iter()
            .map(|&(i, j, _)| (i, j))
            .collect();
        loose.sort();
        assert_eq!(loose, pairs_f64(&f, 0.9));
        // Best first, and the query itself left out.
        let top = most_similar(&f, f.row(10), 2, Some(10));
        assert_eq!(top[0].0, 290);
        assert!(top[0].1 > top[1].1);
    }
}
