//! Folders of images: PNG, JPEG, PGM/PPM/PBM, BMP, TIFF, WebP and GIF (its first frame),
//! recognized by extension and decoded by content. With sub-folders, each sub-folder is a
//! class; with images directly inside, the set is unlabeled. Images are converted to RGB
//! (16-bit, grey and palette images included; EXIF orientation applied), centre-cropped to a
//! square and resized to a fixed side ([`DEFAULT_SIDE`] for `folder:PATH` sources). Files of
//! other kinds are counted and named in a warning, never dropped silently.

use super::{Dataset, Splits};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Side in pixels that `folder:PATH` (and `av:PATH`) images are resized to unless
/// `--image-size` says otherwise: 64 keeps a photo's objects recognizable at a cost a CPU
/// can train (the backbones take any size; ResNets' ImageNet stem wants 64 or more).
pub const DEFAULT_SIDE: usize = 64;

/// File extensions (lower case) of the image formats that folders are read in.
pub const IMAGE_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "pgm", "ppm", "pbm", "pnm", "bmp", "tif", "tiff", "webp", "gif",
];

/// The formats of [`IMAGE_EXTENSIONS`], for messages.
pub const IMAGE_FORMATS: &str = "PNG, JPEG, PGM/PPM/PBM, BMP, TIFF, WebP, GIF";

/// Whether `p` names an image file selfsup reads (by extension, see [`IMAGE_EXTENSIONS`]).
pub(crate) fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Decodes one image file (the format is read from its content), with the EXIF orientation
/// of JPEG, TIFF and WebP files applied; a GIF gives its first frame.
pub fn decode(path: &Path) -> Result<image::DynamicImage> {
    use image::ImageDecoder;
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.is_empty() {
        return Err(Error::format(path, "empty image file (0 bytes)"));
    }
    let bad = |e: image::ImageError| Error::format(path, format!("cannot decode image: {e}"));
    let mut decoder = image::ImageReader::new(std::io::Cursor::new(&bytes))
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?
        .into_decoder()
        .map_err(bad)?;
    let orientation = decoder.orientation().map_err(bad)?;
    let mut img = image::DynamicImage::from_decoder(decoder).map_err(bad)?;
    img.apply_orientation(orientation);
    Ok(img)
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
    let rgb = decode(path)?.to_rgb8();
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

/// The first five of `paths`, then how many more.
fn first_names(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths
        .iter()
        .take(5)
        .map(|p| p.display().to_string())
        .collect();
    let more = paths.len().saturating_sub(5);
    if more > 0 {
        format!("{} and {more} more", names.join(", "))
    } else {
        names.join(", ")
    }
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
    // Files that are not images of a known format, wherever images were looked for.
    let mut ignored: Vec<PathBuf> = Vec::new();
    let mut sort_out = |paths: Vec<PathBuf>, label: Option<u32>, files: &mut Vec<_>| {
        for p in paths {
            if is_image(&p) {
                files.push((p, label));
            } else if p.is_file() {
                ignored.push(p);
            }
        }
    };
    if classes.is_empty() {
        sort_out(entries.clone(), None, &mut files);
    } else {
        for (label, c) in classes.iter().enumerate() {
            class_names.push(
                c.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
            );
            sort_out(sorted_entries(c)?, Some(label as u32), &mut files);
        }
        let mut classless = Vec::new();
        sort_out(entries.clone(), None, &mut classless);
        if !classless.is_empty() {
            let paths: Vec<PathBuf> = classless.into_iter().map(|(p, _)| p).collect();
            tracing::warn!(
                "{}: left out {} images beside the class sub-folders, which belong to no class: {}",
                dir.display(),
                paths.len(),
                first_names(&paths)
            );
        }
    }
    if !ignored.is_empty() {
        tracing::warn!(
            "{}: left out {} files that are not images in a format selfsup reads \
             ({IMAGE_FORMATS}): {}",
            dir.display(),
            ignored.len(),
            first_names(&ignored)
        );
    }
    if files.is_empty() {
        return Err(Error::format(
            dir,
            format!("no image ({IMAGE_FORMATS}) found in this folder or its class sub-folders"),
        ));
    }
    // Decoded on every core, a chunk of files at a time: memory holds the `side`-pixel images
    // and one chunk of decoded files, whatever the number or size of the photos.
    let mut pixels = Vec::with_capacity(files.len() * 3 * side * side);
    let mut labels = Vec::with_capacity(files.len());
    let mut paths = Vec::with_capacity(files.len());
    let mut bad = Vec::new();
    for chunk in files.chunks(64 * rayon::current_num_threads()) {
        use rayon::prelude::*;
        let decoded: Vec<Result<Vec<u8>>> =
            chunk.par_iter().map(|(f, _)| load_image(f, side)).collect();
        for ((f, l), img) in chunk.iter().zip(decoded) {
            match img {
                Ok(px) => {
                    pixels.extend(px);
                    labels.push(l.unwrap_or(0));
                    paths.push(f.clone());
                }
                Err(e) if !strict => bad.push(e.to_string()),
                Err(e) => return Err(e),
            }
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
    tracing::info!(
        "{}: {} images read out of {} files ({} not images, {} unreadable){}",
        dir.display(),
        labels.len(),
        files.len() + ignored.len(),
        ignored.len(),
        bad.len(),
        if classes.is_empty() {
            String::new()
        } else {
            format!(", {} classes", classes.len())
        }
    );
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
        paths,
    })
}

/// Loads `train/` and `test/` sub-folders when both exist, else the whole folder as train;
/// images are resized to `side` x `side`.
pub fn load_splits(dir: &Path, side: usize, strict: bool) -> Result<Splits> {
    let (tr, te) = (dir.join("train"), dir.join("test"));
    if tr.is_dir() && te.is_dir() {
        let train = load_folder(&tr, side, strict)?;
        let mut test = load_folder(&te, side, strict)?;
        if test.class_names != train.class_names {
            // Labels are class indices by sorted folder name: renumber test's by train's.
            let unknown: Vec<&String> = test
                .class_names
                .iter()
                .filter(|c| !train.class_names.contains(c))
                .collect();
            if !unknown.is_empty() || train.labels.is_none() != test.labels.is_none() {
                return Err(Error::format(
                    &te,
                    format!(
                        "its class folders ({}) are not among train/'s ({})",
                        test.class_names.join(", "),
                        train.class_names.join(", ")
                    ),
                ));
            }
            let index: Vec<u32> = test
                .class_names
                .iter()
                .map(|c| train.class_names.iter().position(|t| t == c).unwrap() as u32)
                .collect();
            if let Some(l) = test.labels.as_mut() {
                l.iter_mut().for_each(|v| *v = index[*v as usize]);
            }
            test.class_names = train.class_names.clone();
        }
        Ok(Splits {
            train,
            test: Some(test),
        })
    } else {
        Ok(Splits {
            train: load_folder(dir, side, strict)?,
            test: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checked-in sample files (written by Pillow: `tests/data/formats/make.py`).
    fn sample(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/formats")
            .join(name)
    }

    /// The samples' 12 x 10 pattern.
    fn pattern(x: u32, y: u32) -> [u8; 3] {
        [
            (x * 20 % 256) as u8,
            (y * 25 % 256) as u8,
            ((x + y) * 10 % 256) as u8,
        ]
    }

    #[test]
    fn every_format_decodes_to_the_pattern() {
        // Lossless colour files, palette ones (GIF, palette PNG) included: exact.
        for name in [
            "pattern.png",
            "pattern.ppm",
            "pattern.bmp",
            "pattern.tiff",
            "pattern.webp",
            "pattern.gif",
            "palette.png",
        ] {
            let img = decode(&sample(name)).unwrap().to_rgb8();
            assert_eq!(img.dimensions(), (12, 10), "{name}");
            for (x, y, p) in img.enumerate_pixels() {
                assert_eq!(p.0, pattern(x, y), "{name} at ({x}, {y})");
            }
        }
        // Grey: PGM holds Pillow's luma (ITU-R 601-2, rounded down), replicated to RGB.
        let img = decode(&sample("pattern.pgm")).unwrap().to_rgb8();
        for (x, y, p) in img.enumerate_pixels() {
            let [r, g, b] = pattern(x, y).map(|v| v as u32);
            let luma = ((r * 299 + g * 587 + b * 114) / 1000) as i32;
            assert!(p.0[0] == p.0[1] && p.0[1] == p.0[2], "pgm at ({x}, {y})");
            assert!(
                (p.0[0] as i32 - luma).abs() <= 1,
                "pgm at ({x}, {y}): {p:?} vs {luma}"
            );
        }
        // One bit per pixel: a checkerboard of black and white.
        let img = decode(&sample("pattern.pbm")).unwrap().to_rgb8();
        for (x, y, p) in img.enumerate_pixels() {
            let v = if (x + y) % 2 == 1 { 255 } else { 0 };
            assert_eq!(p.0, [v; 3], "pbm at ({x}, {y})");
        }
        // 16-bit grey, scaled to 8 bits.
        let img = decode(&sample("grey16.png")).unwrap().to_rgb8();
        for (x, _, p) in img.enumerate_pixels() {
            assert_eq!(p.0, [(x * 20 % 256) as u8; 3], "16-bit png at column {x}");
        }
    }

    #[test]
    fn jpeg_exif_orientation_is_applied() {
        // Stored 16 x 8, red left and blue right; orientation 6 shows it turned clockwise.
        let plain = decode(&sample("plain.jpg")).unwrap().to_rgb8();
        assert_eq!(plain.dimensions(), (16, 8));
        let img = decode(&sample("oriented.jpg")).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (8, 16));
        let (top, bottom) = (img.get_pixel(4, 2).0, img.get_pixel(4, 13).0);
        assert!(top[0] > 200 && top[2] < 60, "top {top:?} should be red");
        assert!(
            bottom[2] > 200 && bottom[0] < 60,
            "bottom {bottom:?} should be blue"
        );
    }

    #[test]
    fn corrupt_files_are_skipped_or_refused_and_other_files_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let good = [
            "pattern.png",
            "pattern.ppm",
            "pattern.pgm",
            "pattern.pbm",
            "pattern.bmp",
            "pattern.tiff",
            "pattern.webp",
            "pattern.gif",
            "plain.jpg",
        ];
        for name in good {
            std::fs::copy(sample(name), dir.path().join(name)).unwrap();
            // The same kind of file, its header kept and the rest overwritten.
            let mut bytes = std::fs::read(sample(name)).unwrap();
            bytes.truncate(4);
            bytes.extend([0u8; 60]);
            std::fs::write(dir.path().join(format!("broken-{name}")), bytes).unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), "not an image").unwrap();
        let d = load_folder(dir.path(), 8, false).unwrap();
        assert_eq!(d.len(), good.len());
        let e = load_folder(dir.path(), 8, true).unwrap_err().to_string();
        assert!(e.contains("broken-"), "{e}");
    }

    #[test]
    fn test_labels_follow_train_class_names() {
        let dir = tempfile::tempdir().unwrap();
        let put = |split: &str, class: &str| {
            let d = dir.path().join(split).join(class);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::copy(sample("pattern.png"), d.join("x.png")).unwrap();
        };
        for c in ["ant", "bee", "cat"] {
            put("train", c);
        }
        // test/ lacks "ant": its "bee" and "cat" are train's labels 1 and 2, not 0 and 1.
        put("test", "bee");
        put("test", "cat");
        let s = load_splits(dir.path(), 8, true).unwrap();
        let test = s.test.unwrap();
        assert_eq!(test.labels, Some(vec![1, 2]));
        assert_eq!(test.class_names, ["ant", "bee", "cat"]);
        // A class train/ does not have: refused, naming both lists.
        put("test", "dog");
        let e = load_splits(dir.path(), 8, true).unwrap_err().to_string();
        assert!(
            e.contains("bee, cat, dog") && e.contains("ant, bee, cat"),
            "{e}"
        );
    }
}
