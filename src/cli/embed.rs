//! `selfsup embed`: writes a checkpoint's features of a data set to a `.npy` file.

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use selfsup::data::DataSource;
use std::path::PathBuf;

#[derive(Clone, Copy, ValueEnum)]
/// A data split.
pub enum Split {
    Train,
    Test,
}

#[derive(Args)]
/// Flags of `embed`.
pub struct EmbedArgs {
    /// Checkpoint (`last.safetensors` of a run folder).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Data to embed (default: the checkpoint run's data).
    #[arg(long)]
    data: Option<DataSource>,
    #[command(flatten)]
    checkpoint_flags: super::flags::CheckpointFlags,
    /// Which split to embed.
    #[arg(long, value_enum, default_value = "test")]
    pub split: Split,
    /// Output .npy file (float32, N x D); labels, if any, go to the same name with
    /// `.labels.npy`, and for images read from files (`folder:`) their paths, one per line,
    /// to `.paths.txt`.
    #[arg(long)]
    out: PathBuf,
}

/// Extracts and writes the features (and labels, if any).
pub fn run(a: EmbedArgs) -> Result<()> {
    let (cfg, splits, backbone) =
        super::load_checkpoint(&a.checkpoint, a.data, &a.checkpoint_flags)?;
    let data = match a.split {
        Split::Train => &splits.train,
        Split::Test => splits
            .test
            .as_ref()
            .context("the data has no test split; use --split train")?,
    };
    let f = selfsup::eval::extract_with(
        &backbone,
        data,
        &cfg.views,
        selfsup::methods::readout(&cfg),
        500,
    );
    selfsup::eval::write_npy_f32(&a.out, &f.data, &[f.n as u64, f.dim as u64])?;
    if let Some(l) = &data.labels {
        let lp = a.out.with_extension("labels.npy");
        let l: Vec<i64> = l.iter().map(|&v| v as i64).collect();
        selfsup::eval::write_npy_i64(&lp, &l)?;
    }
    if !data.paths.is_empty() {
        let pp = a.out.with_extension("paths.txt");
        let mut text = String::new();
        for p in &data.paths {
            text += &format!("{}\n", p.display());
        }
        selfsup::train::checkpoint::write_atomic(&pp, text.as_bytes())?;
    }
    println!("wrote {} x {} features to {}", f.n, f.dim, a.out.display());
    Ok(())
}
