//! `selfsup neighbors`: similarity search with a checkpoint's frozen features. For each
//! `--query` image file, the most similar images of a data set (a picture grid and a CSV of
//! paths and cosine similarities); with `--duplicates`, every pair of near-identical images.

use super::embed::Split;
use anyhow::{Context, Result, bail};
use clap::Args;
use selfsup::data::{DataSource, Dataset};
use selfsup::eval::{self, Features, neighbors};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Args)]
/// Flags of `neighbors`.
pub struct NeighborsArgs {
    /// Checkpoint (`last.safetensors` of a run folder; the run's `config.toml` beside it says
    /// the backbone and the image size).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Images to search (default: the checkpoint run's data), e.g. `folder:PHOTOS`.
    #[arg(long)]
    data: Option<DataSource>,
    /// Which split of the data to search.
    #[arg(long, value_enum, default_value = "train")]
    split: Split,
    /// Image files to find neighbours of (any format `selfsup datasets` lists; repeatable).
    /// Each is centre-cropped and resized like the data's images.
    #[arg(long, num_args = 1..)]
    query: Vec<PathBuf>,
    /// Neighbours per query.
    #[arg(long, short, default_value_t = 5)]
    k: usize,
    /// Also list every pair of images whose cosine similarity is at least `--threshold`.
    #[arg(long)]
    duplicates: bool,
    /// Cosine similarity from which two images count as near-duplicates.
    #[arg(long, default_value_t = 0.95)]
    threshold: f32,
    /// Folder for `neighbors.csv` / `neighbors.png` and `duplicates.csv` / `duplicates.png`
    /// (created).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    checkpoint_flags: super::flags::CheckpointFlags,
}

/// How a searched image is named in the CSV: its file, or `SPLIT:INDEX` for sources that
/// are not files (IDX, CIFAR, the embedded data).
fn image_name(data: &Dataset, split: &str, i: usize) -> String {
    data.paths
        .get(i)
        .map_or_else(|| format!("{split}:{i}"), |p| p.display().to_string())
}

/// The class name of image `i`, or an empty field.
fn class_name(data: &Dataset, i: usize) -> String {
    match &data.labels {
        Some(l) => data
            .class_names
            .get(l[i] as usize)
            .cloned()
            .unwrap_or_else(|| l[i].to_string()),
        None => String::new(),
    }
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The query files as a data set shaped like `bank` (its side, and grey when it is grey).
fn load_queries(paths: &[PathBuf], bank: &Dataset) -> Result<Dataset> {
    if bank.height != bank.width {
        bail!(
            "queries are matched to square images; the data's are {}x{}",
            bank.width,
            bank.height
        );
    }
    let side = bank.height;
    let mut pixels = Vec::new();
    for p in paths {
        let rgb = selfsup::data::folder::load_image(p, side)
            .with_context(|| format!("reading query image {}", p.display()))?;
        if bank.channels == 1 {
            // ITU-R 601 luma, as grey images are read.
            let n = side * side;
            pixels.extend((0..n).map(|i| {
                let (r, g, b) = (rgb[i] as u32, rgb[n + i] as u32, rgb[2 * n + i] as u32);
                ((r * 299 + g * 587 + b * 114 + 500) / 1000) as u8
            }));
        } else {
            pixels.extend(rgb);
        }
    }
    Ok(Dataset {
        pixels,
        labels: None,
        class_names: Vec::new(),
        channels: bank.channels,
        height: side,
        width: side,
        clips: Vec::new(),
        sounds: None,
        paths: paths.to_vec(),
    })
}

/// Finds the queries' neighbours and the near-duplicates; writes the CSVs and pictures.
pub fn run(a: NeighborsArgs) -> Result<()> {
    if a.query.is_empty() && !a.duplicates {
        bail!("nothing to search for: give --query IMAGE... and/or --duplicates");
    }
    if a.k == 0 {
        bail!("-k must be at least 1");
    }
    if !(-1.0..=1.0).contains(&a.threshold) {
        bail!(
            "--threshold {} is not a cosine similarity in [-1, 1]",
            a.threshold
        );
    }
    let (cfg, splits, backbone) =
        super::load_checkpoint(&a.checkpoint, a.data.clone(), &a.checkpoint_flags)?;
    let (bank, split) = match a.split {
        Split::Train => (&splits.train, "train"),
        Split::Test => (
            splits
                .test
                .as_ref()
                .context("the data has no test split; use --split train")?,
            "test",
        ),
    };
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let readout = selfsup::methods::readout(&cfg);
    let features = eval::extract_with(&backbone, bank, &cfg.views, readout, 500);
    println!(
        "searching {} {split} images of {} ({} features each)",
        bank.len(),
        cfg.data,
        features.dim
    );
    if !a.query.is_empty() {
        let queries = load_queries(&a.query, bank)?;
        let qf = eval::extract_with(&backbone, &queries, &cfg.views, readout, 500);
        write_neighbors(&a, bank, split, &features, &queries, &qf)?;
    }
    if a.duplicates {
        write_duplicates(&a, bank, split, &features)?;
    }
    Ok(())
}

/// The query image's own index in `bank`, when the query is one of its files.
fn position_in(bank: &Dataset, query: &Path) -> Option<usize> {
    let q = std::fs::canonicalize(query).ok()?;
    bank.paths
        .iter()
        .position(|p| std::fs::canonicalize(p).is_ok_and(|p| p == q))
}

/// Queries (pairs) shown in `neighbors.png` (`duplicates.png`); the CSVs hold all.
const ROWS_SHOWN: usize = 32;

fn write_neighbors(
    a: &NeighborsArgs,
    bank: &Dataset,
    split: &str,
    features: &Features,
    queries: &Dataset,
    qf: &Features,
) -> Result<()> {
    let csv_path = a.out.join("neighbors.csv");
    let mut out = String::from("query,rank,neighbor,class,similarity\n");
    let mut grid = Vec::new();
    for (q, path) in a.query.iter().enumerate() {
        let own = position_in(bank, path);
        let nn = neighbors::most_similar(features, qf.row(q), a.k, own);
        for (rank, &(i, s)) in nn.iter().enumerate() {
            out += &format!(
                "{},{},{},{},{s:.6}\n",
                csv(&path.display().to_string()),
                rank + 1,
                csv(&image_name(bank, split, i)),
                csv(&class_name(bank, i)),
            );
        }
        grid.push(nn.into_iter().map(|(i, _)| i).collect::<Vec<_>>());
    }
    selfsup::train::checkpoint::write_atomic(&csv_path, out.as_bytes())?;
    let png = a.out.join("neighbors.png");
    let shown = queries.len().min(ROWS_SHOWN);
    let rows: Vec<usize> = (0..shown).collect();
    neighbors::save_grid(&png, queries, &rows, bank, &grid[..shown])?;
    println!(
        "{} queries, {} neighbours each: {} and {}{}",
        a.query.len(),
        a.k,
        csv_path.display(),
        png.display(),
        if shown < queries.len() {
            format!(" (the first {shown})")
        } else {
            String::new()
        }
    );
    Ok(())
}

fn write_duplicates(a: &NeighborsArgs, bank: &Dataset, split: &str, f: &Features) -> Result<()> {
    let start = std::time::Instant::now();
    let pairs = neighbors::near_duplicates(f, a.threshold);
    let csv_path = a.out.join("duplicates.csv");
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(&csv_path)
            .with_context(|| format!("creating {}", csv_path.display()))?,
    );
    writeln!(file, "image,duplicate,similarity")?;
    for &(i, j, s) in &pairs {
        writeln!(
            file,
            "{},{},{s:.6}",
            csv(&image_name(bank, split, i)),
            csv(&image_name(bank, split, j))
        )?;
    }
    file.flush()?;
    let png = a.out.join("duplicates.png");
    let shown = &pairs[..pairs.len().min(ROWS_SHOWN)];
    if !shown.is_empty() {
        let left: Vec<usize> = shown.iter().map(|p| p.0).collect();
        let right: Vec<Vec<usize>> = shown.iter().map(|p| vec![p.1]).collect();
        neighbors::save_grid(&png, bank, &left, bank, &right)?;
    }
    println!(
        "{} pairs with cosine similarity >= {} among {} images ({:.1} s): {}{}",
        pairs.len(),
        a.threshold,
        bank.len(),
        start.elapsed().as_secs_f64(),
        csv_path.display(),
        if shown.is_empty() {
            String::new()
        } else {
            format!(" and {} (the first {})", png.display(), shown.len())
        }
    );
    Ok(())
}
