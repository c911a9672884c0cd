//! Folders of images (PNG, JPEG). With sub-folders, each sub-folder is a class; with images
//! directly inside, the set is unlabeled. Images are converted to RGB, centre-cropped to a
//! square and resized to a fixed side ([`DEFAULT_SIDE`] for `folder:PATH` sources).

use super::{Dataset, Splits};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Side in pixels that `folder:PATH` images are resized to.
pub const DEFAULT_SIDE: usize = 32;

/// Whether `p` names a PNG or JPEG file (by extension).
pub(crate) fn is_image(p: &Path) -> bool {
    matches!(
        p.extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref(),
        Some("png" | "jpg" | "jpeg")
    )
}

/// The entries of `dir`, sorted by path.
pub(crate) fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut v: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    v.sort();
    Ok(v)
}

/// Decodes one image file to RGB, centre-cropped and resized to `side` x `side`, CHW bytes.
pub fn load_image(path: &Path, side: usize) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.is_empty() {
        return Err(Error::format(path, "empty image file (0 bytes)"));
    }
    let img = image::load_from_memory(&bytes)
        .map_err(|e| Error::format(path, format!("cannot decode image: {e}")))?;
    let rgb = img.to_rgb8();
    let (w, h) = rgb.dimensions();
    let s = w.min(h);
    let cropped = image::imageops::crop_imm(&rgb, (w - s) / 2, (h - s) / 2, s, s).to_image();
    let resized = image::imageops::resize(
        &cropped,
        side as u32,
        side as u32,
        image::imageops::FilterType::Triangle,
    );
    let mut chw = vec![0u8; 3 * side * side];
    for (i, p) in resized.pixels().enumerate() {
        for c in 0..3 {
            chw[c * side * side + i] = p.0[c];
        }
    }
    Ok(chw)
}

/// Loads one folder: class sub-folders (labeled) or images directly inside (unlabeled).
/// Images that cannot be read or decoded stop the load when `strict`; otherwise they are
/// skipped, and a warning names them and counts them.
pub fn load_folder(dir: &Path, side: usize, strict: bool) -> Result<Dataset> {
    if !dir.is_dir() {
        return Err(Error::io(
            dir,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such folder"),
        ));
    }
    let entries = sorted_entries(dir)?;
    let classes: Vec<&PathBuf> = entries.iter().filter(|p| p.is_dir()).collect();
    let mut files: Vec<(PathBuf, Option<u32>)> = Vec::new();
    let mut class_names = Vec::new();
    if classes.is_empty() {
        files.extend(
            entries
                .iter()
                .filter(|p| is_image(p))
                .map(|p| (p.clone(), None)),
        );
    } else {
        for (label, c) in classes.iter().enumerate() {
            class_names.push(
                c.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
            );
            for f in sorted_entries(c)?.into_iter().filter(|p| is_image(p)) {
                files.push((f, Some(label as u32)));
            }
        }
    }
    if files.is_empty() {
        return Err(Error::format(
            dir,
            "no PNG or JPEG image found in this folder or its class sub-folders",
        ));
    }
    let mut pixels = Vec::with_capacity(files.len() * 3 * side * side);
    let mut labels = Vec::with_capacity(files.len());
    let mut bad = Vec::new();
    for (f, l) in &files {
        match load_image(f, side) {
            Ok(px) => {
                pixels.extend(px);
                labels.push(l.unwrap_or(0));
            }
            Err(e) if !strict => bad.push(e.to_string()),
            Err(e) => return Err(e),
        }
    }
    if !bad.is_empty() {
        tracing::warn!(
            "{}: skipped {} of {} images that could not be read (--strict stops instead): {}{}",
            dir.display(),
            bad.len(),
            files.len(),
            bad.iter().take(5).cloned().collect::<Vec<_>>().join("; "),
            if bad.len() > 5 { "; ..." } else { "" }
        );
    }
    if labels.is_empty() {
        return Err(Error::format(
            dir,
            format!(
                "none of its {} images could be read: {}",
                files.len(),
                bad[0]
            ),
        ));
    }
    let labels = if classes.is_empty() {
        None
    } else {
        Some(labels)
    };
    Ok(Dataset {
        pixels,
        labels,
        class_names,
        channels: 3,
        height: side,
        width: side,
        clips: Vec::new(),
        sounds: None,
    })
}

/// Loads `train/` and `test/` sub-folders when both exist, else the whole folder as train;
/// images are resized to `side` x `side`.
pub fn load_splits(dir: &Path, side: usize, strict: bool) -> Result<Splits> {
    let (tr, te) = (dir.join("train"), dir.join("test"));
    if tr.is_dir() && te.is_dir() {
        Ok(Splits {
            train: load_folder(&tr, side, strict)?,
            test: Some(load_folder(&te, side, strict)?),
        })
    } else {
        Ok(Splits {
            train: load_folder(dir, side, strict)?,
            test: None,
        })
    }
}
