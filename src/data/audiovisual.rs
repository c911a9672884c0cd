//! Image + sound pairs: `NAME.png` (or `.jpg`) beside `NAME.ogg` (or `.wav`, `.mp3`, `.m4a`)
//! in category sub-folders (or directly in the folder). Images are loaded like folder images
//! (RGB, centre square, `side` pixels); sounds are decoded, resampled and turned into log-mel
//! spectrograms once, at load time, and ride along in [`Dataset::sounds`].

use super::folder::{self, is_image, sorted_entries};
use super::{Dataset, Splits, audio};
use crate::error::{Error, Result};
use crate::pretext::mel::{MelConfig, Spectrogram};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const SOUND_EXTENSIONS: &[&str] = &["ogg", "wav", "mp3", "m4a", "flac"];

fn sound_beside(image: &Path) -> Option<PathBuf> {
    SOUND_EXTENSIONS
        .iter()
        .map(|e| image.with_extension(e))
        .find(|p| p.is_file())
}

/// Loads the pairs under `dir`; every `holdout_every`-th pair of each category (in name
/// order, starting with the last of each five) is the test split (0: no test split).
pub fn load_splits(
    dir: &Path,
    side: usize,
    mel: &MelConfig,
    ffmpeg: &str,
    holdout_every: usize,
) -> Result<Splits> {
    mel.validate()?;
    if !dir.is_dir() {
        return Err(Error::io(
            dir,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such folder"),
        ));
    }
    let mut groups: Vec<(String, Vec<PathBuf>)> = Vec::new();
    let direct: Vec<PathBuf> = sorted_entries(dir)?
        .into_iter()
        .filter(|p| is_image(p))
        .collect();
    if !direct.is_empty() {
        groups.push((String::new(), direct));
    }
    for sub in sorted_entries(dir)?.into_iter().filter(|p| p.is_dir()) {
        let imgs: Vec<PathBuf> = sorted_entries(&sub)?
            .into_iter()
            .filter(|p| is_image(p))
            .collect();
        let name = sub
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into());
        groups.push((name, imgs));
    }
    let mut items = Vec::new();
    for (label, (_, imgs)) in groups.iter().enumerate() {
        let pairs: Vec<(PathBuf, PathBuf)> = imgs
            .iter()
            .filter_map(|i| sound_beside(i).map(|s| (i.clone(), s)))
            .collect();
        for (k, (img, snd)) in pairs.into_iter().enumerate() {
            let test = holdout_every > 0 && k % holdout_every == holdout_every - 1;
            items.push((label as u32, img, snd, test));
        }
    }
    if items.is_empty() {
        return Err(Error::format(
            dir,
            "no image with a sound of the same name beside it (NAME.png + NAME.ogg/.wav/.mp3)",
        ));
    }
    let loaded: Vec<(Vec<u8>, Spectrogram)> = items
        .par_iter()
        .map(|(_, img, snd, _)| {
            let pixels = folder::load_image(img, side)?;
            let sound = audio::load(snd, mel.sample_rate, ffmpeg)?;
            Ok((pixels, Spectrogram::of(&sound.samples, mel)))
        })
        .collect::<Result<_>>()?;
    let class_names: Vec<String> = groups.iter().map(|g| g.0.clone()).collect();
    let make = |test: bool| {
        let mut pixels = Vec::new();
        let (mut labels, mut sounds) = (Vec::new(), Vec::new());
        for ((label, _, _, t), (px, spec)) in items.iter().zip(&loaded) {
            if *t == test {
                pixels.extend_from_slice(px);
                labels.push(*label);
                sounds.push(spec.clone());
            }
        }
        Dataset {
            pixels,
            labels: Some(labels),
            class_names: class_names.clone(),
            channels: 3,
            height: side,
            width: side,
            clips: Vec::new(),
            sounds: Some(Arc::new(sounds)),
        }
    };
    let test = make(true);
    Ok(Splits {
        train: make(false),
        test: (!test.is_empty()).then_some(test),
    })
}
