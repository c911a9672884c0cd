//! CIFAR-10 and CIFAR-100 binary batches, as distributed in the `*-binary.tar.gz` archives.
//!
//! A CIFAR-10 record is 1 label byte then 3,072 pixel bytes (1,024 red, green, blue, each
//! 32x32 row-major); a CIFAR-100 record has 2 label bytes (coarse, fine) before the pixels.

use super::{Dataset, Splits, read_file};
use crate::error::{Error, Result};
use std::path::Path;

const PIXELS: usize = 3 * 32 * 32;

/// Parses CIFAR binary records; `label_bytes` is 1 for CIFAR-10 and 2 for CIFAR-100 (the
/// fine label, the last one, is kept).
pub fn parse(path: &Path, bytes: &[u8], label_bytes: usize) -> Result<Dataset> {
    let record = label_bytes + PIXELS;
    if bytes.is_empty() {
        return Err(Error::format(path, "empty CIFAR batch file"));
    }
    if bytes.len() % record != 0 {
        return Err(Error::format(
            path,
            format!(
                "truncated CIFAR file: {} bytes is not a multiple of the {record}-byte record ({} whole records, {} bytes left over)",
                bytes.len(),
                bytes.len() / record,
                bytes.len() % record
            ),
        ));
    }
    let n = bytes.len() / record;
    let mut pixels = Vec::with_capacity(n * PIXELS);
    let mut labels = Vec::with_capacity(n);
    let max_label = if label_bytes == 1 { 9 } else { 99 };
    for (i, r) in bytes.chunks_exact(record).enumerate() {
        let label = r[label_bytes - 1] as u32;
        if label > max_label {
            return Err(Error::format(
                path,
                format!(
                    "record {i} has label {label}, above {max_label}: is this the right CIFAR variant?"
                ),
            ));
        }
        labels.push(label);
        pixels.extend_from_slice(&r[label_bytes..]);
    }
    Ok(Dataset {
        pixels,
        labels: Some(labels),
        class_names: Vec::new(),
        channels: 3,
        height: 32,
        width: 32,
        clips: Vec::new(),
        sounds: None,
        paths: Vec::new(),
    })
}

fn concat(parts: Vec<Dataset>) -> Dataset {
    let mut it = parts.into_iter();
    let mut first = it.next().expect("at least one part");
    for p in it {
        first.pixels.extend(p.pixels);
        if let (Some(a), Some(b)) = (&mut first.labels, p.labels) {
            a.extend(b);
        }
    }
    first
}

fn class_names(dir: &Path, file: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join(file))
        .map(|s| {
            s.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

fn require_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        Ok(())
    } else {
        Err(Error::io(
            dir,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such folder"),
        ))
    }
}

/// Loads CIFAR-10 from a folder with `data_batch_1.bin` ... `data_batch_5.bin` (any that are
/// present) and `test_batch.bin`.
pub fn load_cifar10_dir(dir: &Path) -> Result<Splits> {
    require_dir(dir)?;
    let mut train = Vec::new();
    for i in 1..=5 {
        let p = dir.join(format!("data_batch_{i}.bin"));
        if p.exists() {
            train.push(parse(&p, &read_file(&p)?, 1)?);
        }
    }
    if train.is_empty() {
        return Err(Error::format(
            dir,
            "no data_batch_N.bin file in this folder",
        ));
    }
    let test_path = dir.join("test_batch.bin");
    let test = if test_path.exists() {
        Some(parse(&test_path, &read_file(&test_path)?, 1)?)
    } else {
        None
    };
    let names = class_names(dir, "batches.meta.txt");
    let mut train = concat(train);
    train.class_names = names.clone();
    Ok(Splits {
        train,
        test: test.map(|mut t| {
            t.class_names = names;
            t
        }),
    })
}

/// Loads CIFAR-100 (fine labels) from a folder with `train.bin` and optionally `test.bin`.
pub fn load_cifar100_dir(dir: &Path) -> Result<Splits> {
    require_dir(dir)?;
    let p = dir.join("train.bin");
    if !p.exists() {
        return Err(Error::format(dir, "no train.bin in this folder"));
    }
    let names = class_names(dir, "fine_label_names.txt");
    let mut train = parse(&p, &read_file(&p)?, 2)?;
    train.class_names = names.clone();
    let tp = dir.join("test.bin");
    let test = if tp.exists() {
        Some(parse(&tp, &read_file(&tp)?, 2)?)
    } else {
        None
    };
    Ok(Splits {
        train,
        test: test.map(|mut t| {
            t.class_names = names;
            t
        }),
    })
}
