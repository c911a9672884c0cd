//! MNIST-style IDX files (`train-images-idx3-ubyte[.gz]`, ...), as used by MNIST and
//! Fashion-MNIST. Format: a 4-byte magic number `0x00 0x00 TYPE NDIM`, NDIM big-endian `u32`
//! dimensions, then the data; only unsigned-byte data (TYPE `0x08`) is used by image sets.

use super::{Dataset, Splits, maybe_gunzip, read_file};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// A parsed IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxArray {
    /// The dimensions, outermost first.
    pub dims: Vec<usize>,
    /// The data, row-major.
    pub data: Vec<u8>,
}

/// Parses IDX bytes (already inflated); `path` is only used in error messages.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<IdxArray> {
    if bytes.len() < 4 {
        return Err(Error::format(
            path,
            format!(
                "truncated IDX file: {} bytes, the header needs at least 4",
                bytes.len()
            ),
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(Error::format(
            path,
            format!(
                "bad IDX magic number {:02x}{:02x}{:02x}{:02x}: the first two bytes must be zero",
                bytes[0], bytes[1], bytes[2], bytes[3]
            ),
        ));
    }
    if bytes[2] != 0x08 {
        return Err(Error::format(
            path,
            format!(
                "IDX data type 0x{:02x} is not supported: only unsigned bytes (0x08)",
                bytes[2]
            ),
        ));
    }
    let ndim = bytes[3] as usize;
    if ndim == 0 {
        return Err(Error::format(path, "IDX file declares zero dimensions"));
    }
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(Error::format(
            path,
            format!("truncated IDX header: {} bytes, need {header}", bytes.len()),
        ));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize)
        .collect();
    let count = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let count =
        count.ok_or_else(|| Error::format(path, format!("IDX dimensions {dims:?} overflow")))?;
    let available = bytes.len() - header;
    if available < count {
        return Err(Error::format(
            path,
            format!(
                "truncated IDX file: dimensions {dims:?} need {count} data bytes, found {available}"
            ),
        ));
    }
    if available > count {
        return Err(Error::format(
            path,
            format!(
                "IDX file has {} bytes after the data declared by {dims:?}",
                available - count
            ),
        ));
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Reads an IDX file, gzipped or not.
pub fn read(path: &Path) -> Result<IdxArray> {
    let bytes = maybe_gunzip(path, read_file(path)?)?;
    parse(path, &bytes)
}

/// Builds a data set from an images array (N x H x W) and an optional labels array (N).
pub fn dataset_from(
    images: IdxArray,
    images_path: &Path,
    labels: Option<(IdxArray, &Path)>,
) -> Result<Dataset> {
    if images.dims.len() != 3 {
        return Err(Error::format(
            images_path,
            format!(
                "expected an N x H x W image array, found dimensions {:?}",
                images.dims
            ),
        ));
    }
    let (n, h, w) = (images.dims[0], images.dims[1], images.dims[2]);
    let labels = match labels {
        None => None,
        Some((l, lpath)) => {
            if l.dims.len() != 1 {
                return Err(Error::format(
                    lpath,
                    format!("expected a 1-D label array, found dimensions {:?}", l.dims),
                ));
            }
            if l.dims[0] != n {
                return Err(Error::format(
                    lpath,
                    format!(
                        "{} labels for {n} images in {}",
                        l.dims[0],
                        images_path.display()
                    ),
                ));
            }
            Some(l.data.iter().map(|&b| b as u32).collect())
        }
    };
    Ok(Dataset {
        pixels: images.data,
        labels,
        class_names: Vec::new(),
        channels: 1,
        height: h,
        width: w,
        clips: Vec::new(),
        sounds: None,
        paths: Vec::new(),
    })
}

fn find(dir: &Path, stem: &str) -> Option<PathBuf> {
    [format!("{stem}.gz"), stem.to_string()]
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| p.exists())
}

/// Loads `train-*` and (when present) `t10k-*` IDX files from a folder, gzipped or not.
pub fn load_dir(dir: &Path) -> Result<Splits> {
    if !dir.is_dir() {
        return Err(Error::io(
            dir,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such folder"),
        ));
    }
    let load = |prefix: &str| -> Result<Option<Dataset>> {
        let Some(images) = find(dir, &format!("{prefix}-images-idx3-ubyte")) else {
            return Ok(None);
        };
        let labels = find(dir, &format!("{prefix}-labels-idx1-ubyte"));
        let arr = read(&images)?;
        let lab = match &labels {
            Some(p) => Some((read(p)?, p.as_path())),
            None => None,
        };
        dataset_from(arr, &images, lab).map(Some)
    };
    let train = load("train")?
        .ok_or_else(|| Error::format(dir, "no train-images-idx3-ubyte[.gz] in this folder"))?;
    let test = load("t10k")?;
    let names = fashion_names_if(dir);
    let mut splits = Splits { train, test };
    if let Some(n) = names {
        splits.train.class_names = n.clone();
        if let Some(t) = &mut splits.test {
            t.class_names = n;
        }
    }
    Ok(splits)
}

/// Fashion-MNIST's class names, used when the folder name says it is Fashion-MNIST.
pub const FASHION_CLASSES: [&str; 10] = [
    "T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Boot",
];

fn fashion_names_if(dir: &Path) -> Option<Vec<String>> {
    let name = dir.canonicalize().ok()?.to_string_lossy().to_lowercase();
    name.contains("fashion")
        .then(|| FASHION_CLASSES.iter().map(|s| s.to_string()).collect())
}
