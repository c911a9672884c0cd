//! Image + sound pairs: `NAME.png` (or `.jpg`) beside `NAME.ogg` (or `.wav`, `.mp3`, `.m4a`)
//! in category sub-folders (or directly in the folder). Images are loaded like folder images
//! (RGB, centre square, `side` pixels); sounds are decoded, resampled and turned into log-mel
//! spectrograms once, at load time, and ride along in [`Dataset::sounds`].
//!
//! Video files with a sound track are pairs too: every frame (sampled as `[video]` says) with
//! the `audio.frame_seconds` of sound centred on it ([`load_video_pairs`]).

use super::folder::{self, is_image, sorted_entries};
use super::video::{self, Clip, VideoConfig, is_video_file};
use super::{Dataset, Splits, audio};
use crate::error::{Error, Result};
use crate::features::mel::{MelConfig, Spectrogram};
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

/// Loads the pairs under `dir` (or, when it holds no image pairs but video files, or is a
/// video file, the frames of its videos with their sound: see [`load_video_pairs`]); every `holdout_every`-th pair of each category (in name
/// order, starting with the last of each five) is the test split (0: no test split).
pub fn load_splits(
    dir: &Path,
    side: usize,
    mel: &MelConfig,
    video: &VideoConfig,
    holdout_every: usize,
) -> Result<Splits> {
    let ffmpeg = video.ffmpeg.as_str();
    mel.validate()?;
    if dir.is_file() && is_video_file(dir) {
        return load_video_pairs(dir, video, mel, holdout_every);
    }
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
        if sorted_entries(dir)?
            .iter()
            .any(|p| p.is_file() && is_video_file(p))
        {
            return load_video_pairs(dir, video, mel, holdout_every);
        }
        return Err(Error::format(
            dir,
            "no image with a sound of the same name beside it (NAME.png + NAME.ogg/.wav/.mp3), and no video file",
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
            paths: Vec::new(),
        }
    };
    let test = make(true);
    Ok(Splits {
        train: make(false),
        test: (!test.is_empty()).then_some(test),
    })
}

/// Frames of the video file `path` (or of the video files in the folder `path`, in name
/// order; those without a sound track are skipped with a warning), each with the
/// `mel.frame_seconds` of sound centred on it: frame `i` of `n` sits at `(i + 0.5) d / n`
/// seconds of a sound track `d` seconds long. Clips named in `video.holdout` are the test
/// split; with none named, the last `1 / holdout_every` of every clip is (0: no test split).
pub fn load_video_pairs(
    path: &Path,
    video: &VideoConfig,
    mel: &MelConfig,
    holdout_every: usize,
) -> Result<Splits> {
    mel.validate()?;
    let files: Vec<PathBuf> = if path.is_file() {
        vec![path.to_path_buf()]
    } else {
        sorted_entries(path)?
            .into_iter()
            .filter(|p| p.is_file() && is_video_file(p))
            .collect()
    };
    let mut clips: Vec<(Clip, Vec<Spectrogram>)> = Vec::new();
    for file in &files {
        let sound = match audio::video_sound_track(file, mel.sample_rate, &video.ffmpeg)? {
            Some(s) => s,
            None if files.len() > 1 => {
                tracing::warn!("{}: no sound track, skipped", file.display());
                continue;
            }
            None => return Err(Error::format(file, "the video has no sound track")),
        };
        let spec = Spectrogram::of(&sound.samples, mel);
        if spec.frames == 0 {
            return Err(Error::format(
                file,
                format!(
                    "sound track shorter than one FFT window ({} samples)",
                    mel.n_fft
                ),
            ));
        }
        let clip = video::read_video(file, video)?;
        let n = clip.len();
        let per_second = mel.sample_rate as f64 / mel.hop as f64;
        let width = ((mel.frame_seconds as f64 * per_second).round() as usize).max(1);
        let sounds = (0..n)
            .map(|i| {
                let centre = (i as f64 + 0.5) * sound.seconds() / n as f64 * per_second;
                let start = (centre - width as f64 / 2.0).round().max(0.0) as usize;
                spec.excerpt(start.min(spec.frames.saturating_sub(width)), width)
            })
            .collect();
        clips.push((clip, sounds));
    }
    if clips.is_empty() {
        return Err(Error::format(
            path,
            "no video file with a sound track in it",
        ));
    }
    let names: Vec<&str> = clips.iter().map(|(k, _)| k.name.as_str()).collect();
    video::check_holdout(&video.holdout, &names, path)?;
    let (mut train, mut test): (Vec<(Clip, Vec<Spectrogram>)>, Vec<_>) = (Vec::new(), Vec::new());
    for (clip, sounds) in clips {
        if !video.holdout.is_empty() {
            if video.holdout.contains(&clip.name) {
                test.push((clip, sounds));
            } else {
                train.push((clip, sounds));
            }
            continue;
        }
        let n = clip.len();
        let held = n.checked_div(holdout_every).unwrap_or(0);
        let cut = n - held;
        let bytes = clip.frames.len() / n.max(1);
        let part = |range: std::ops::Range<usize>| Clip {
            name: clip.name.clone(),
            frames: clip.frames[range.start * bytes..range.end * bytes].to_vec(),
            channels: clip.channels,
            side: clip.side,
        };
        if held > 0 {
            test.push((part(cut..n), sounds[cut..].to_vec()));
        }
        train.push((part(0..cut), sounds[..cut].to_vec()));
    }
    if train.iter().all(|(k, _)| k.is_empty()) {
        return Err(Error::Config(format!(
            "video.holdout holds out every clip with sound in {}: none is left to train on",
            path.display()
        )));
    }
    let to_dataset = |pairs: Vec<(Clip, Vec<Spectrogram>)>| {
        let (clips, sounds): (Vec<Clip>, Vec<Vec<Spectrogram>>) = pairs.into_iter().unzip();
        let mut d = video::clips_to_dataset(&clips);
        d.sounds = Some(Arc::new(sounds.into_iter().flatten().collect()));
        d
    };
    Ok(Splits {
        train: to_dataset(train),
        test: (!test.is_empty()).then(|| to_dataset(test)),
    })
}
