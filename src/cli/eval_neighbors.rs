//! `selfsup eval neighbors`: the nearest training images of test queries, and a t-SNE map.

use super::eval::EvalArgs;
use anyhow::{Context, Result, bail};
use selfsup::config::RunConfig;
use selfsup::data::Splits;
use selfsup::eval;
use selfsup::nn::Backbone;
use std::path::{Path, PathBuf};

/// Where `eval neighbors` writes its pictures (created): `--plot`, or beside the checkpoint.
fn neighbors_dir(a: &EvalArgs) -> Result<PathBuf> {
    let dir = a.plot.clone().unwrap_or_else(|| {
        a.checkpoint
            .parent()
            .unwrap_or(Path::new("."))
            .to_path_buf()
    });
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Draws the neighbour grid (and the t-SNE map) of `backbone`'s features.
pub fn run(a: &EvalArgs, cfg: &RunConfig, splits: &Splits, backbone: &Backbone) -> Result<()> {
    use eval::neighbors;
    let test = splits
        .test
        .as_ref()
        .context("neighbour pictures need a test split")?;
    if a.queries == 0 || a.neighbors == 0 {
        bail!("--queries and --neighbors must be at least 1");
    }
    let ftr = eval::extract_with(
        backbone,
        &splits.train,
        &cfg.views,
        selfsup::methods::readout(cfg),
        500,
    );
    let fte = eval::extract_with(
        backbone,
        test,
        &cfg.views,
        selfsup::methods::readout(cfg),
        500,
    );
    // Video: queries spread evenly over the held-out frames, and no label frames (a clip's
    // label only names the clip, and held-out clips are not among the training clips).
    if !test.clips.is_empty() {
        let n = a.queries.min(test.len());
        let queries: Vec<usize> = (0..n).map(|i| i * test.len() / n).collect();
        let nn: Vec<Vec<usize>> = queries
            .iter()
            .map(|&q| neighbors::nearest(&ftr, &fte, q, a.neighbors))
            .collect();
        let grid = neighbors_dir(a)?.join("neighbors.png");
        let unlabeled = |d: &selfsup::data::Dataset| selfsup::data::Dataset {
            labels: None,
            ..d.clone()
        };
        neighbors::save_grid(
            &grid,
            &unlabeled(test),
            &queries,
            &unlabeled(&splits.train),
            &nn,
        )?;
        let names = &splits.train.class_names;
        let labels = splits.train.labels.as_deref().unwrap_or(&[]);
        let mut from = vec![0usize; names.len()];
        for i in nn.iter().flatten() {
            if let Some(&l) = labels.get(*i) {
                from[l as usize] += 1;
            }
        }
        let counts: Vec<String> = names
            .iter()
            .zip(&from)
            .map(|(n, c)| format!("{n} {c}"))
            .collect();
        println!("neighbours by training clip: {}", counts.join(", "));
        println!("neighbour grid: {}", grid.display());
        return Ok(());
    }
    // One query per class first (when labelled), then the following test images.
    let mut queries: Vec<usize> = Vec::new();
    if let Some(l) = &test.labels {
        let classes = l.iter().copied().max().map_or(0, |m| m + 1);
        for c in 0..classes {
            if let Some(i) = l.iter().position(|&x| x == c) {
                queries.push(i);
            }
        }
    }
    queries.truncate(a.queries);
    let mut next = 0;
    while queries.len() < a.queries.min(test.len()) {
        if !queries.contains(&next) {
            queries.push(next);
        }
        next += 1;
    }
    let nn: Vec<Vec<usize>> = queries
        .iter()
        .map(|&q| neighbors::nearest(&ftr, &fte, q, a.neighbors))
        .collect();
    let dir = neighbors_dir(a)?;
    let grid = dir.join("neighbors.png");
    neighbors::save_grid(&grid, test, &queries, &splits.train, &nn)?;
    if let (Some(lt), Some(ltr)) = (&test.labels, &splits.train.labels) {
        let agree: usize = queries
            .iter()
            .zip(&nn)
            .map(|(&q, n)| n.iter().filter(|&&i| ltr[i] == lt[q]).count())
            .sum();
        println!(
            "neighbours with the query's label: {agree} of {}",
            queries.len() * a.neighbors
        );
    }
    println!("neighbour grid: {}", grid.display());
    if a.tsne_points > 0 {
        let n = a.tsne_points.min(fte.n);
        let sub = eval::Features {
            data: fte.data[..n * fte.dim].to_vec(),
            n,
            dim: fte.dim,
        };
        let start = std::time::Instant::now();
        let pts = neighbors::tsne(&sub, 30.0, 500, cfg.seed);
        let labels: Vec<u32> = test.labels.as_ref().map_or(vec![0; n], |l| l[..n].to_vec());
        let map = dir.join("tsne.png");
        neighbors::save_map(
            &map,
            &format!("t-SNE of {n} test features ({})", cfg.method),
            &pts,
            &labels,
            &test.class_names,
        )?;
        println!(
            "t-SNE map: {} ({:.0} s)",
            map.display(),
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
