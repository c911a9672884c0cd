//! Video clips: frames decoded by the `ffmpeg` program (mp4, avi, mpg, mkv, ...) read from its
//! raw-video pipe, or frame images (PNG, JPEG) in a folder, sorted by name.
//!
//! Frames are sampled at a chosen rate, scaled so the short side is [`VideoConfig::side`],
//! centre-cropped to a square and kept as `u8` in memory: a clip is decoded once per run,
//! and every epoch reads the cached frames. A clip becomes a [`Dataset`] of frames whose
//! [`Dataset::clips`] give the frame range of each clip and whose label is the clip's index.

use super::{Dataset, Splits};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// How clips are read (`[video]` in the run config).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VideoConfig {
    /// Side of the square frames, in pixels (short side scaled to it, then centre-cropped).
    pub side: usize,
    /// Frames per second to sample (0 = every frame of the file).
    pub fps: f64,
    /// Convert frames to one grey channel (so features transfer to grey data sets).
    pub gray: bool,
    /// Keep at most this many frames of each clip (0 = all).
    pub max_frames: usize,
    /// Clips (file or folder names without extension) held out as the test split. Empty: the
    /// last clip by name is held out when there are several (unless `train/` and `test/`
    /// sub-folders split them).
    pub holdout: Vec<String>,
    /// The ffmpeg program (a name on `PATH` or a path).
    pub ffmpeg: String,
}

impl Default for VideoConfig {
    fn default() -> Self {
        VideoConfig {
            side: 32,
            fps: 0.0,
            gray: true,
            max_frames: 0,
            holdout: Vec::new(),
            ffmpeg: "ffmpeg".into(),
        }
    }
}

impl VideoConfig {
    /// Checks the values, naming the field at fault.
    pub fn validate(&self) -> Result<()> {
        if self.side < 4 {
            return Err(Error::Config(format!(
                "video.side = {} must be at least 4 pixels",
                self.side
            )));
        }
        if !(self.fps >= 0.0 && self.fps.is_finite()) {
            return Err(Error::Config(format!(
                "video.fps = {} must be 0 (every frame) or a positive rate",
                self.fps
            )));
        }
        Ok(())
    }

    fn channels(&self) -> usize {
        if self.gray { 1 } else { 3 }
    }
}

/// The decoded frames of one clip.
#[derive(Clone, Debug)]
pub struct Clip {
    /// The clip's name (file or folder name without extension).
    pub name: String,
    /// Frames in order, each `channels * side * side` bytes in CHW order.
    pub frames: Vec<u8>,
    /// Channels per frame.
    pub channels: usize,
    /// Side of the square frames.
    pub side: usize,
}

impl Clip {
    /// Number of frames.
    pub fn len(&self) -> usize {
        self.frames.len() / (self.channels * self.side * self.side).max(1)
    }

    /// Whether the clip has no frame.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// File extensions read as videos through ffmpeg.
const VIDEO_EXTENSIONS: &[&str] = &[
    "mp4", "m4v", "avi", "mpg", "mpeg", "mkv", "mov", "webm", "ogv", "wmv", "flv", "3gp",
];

/// Whether `path` names a video file (by extension).
pub fn is_video_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| VIDEO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn clip_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Decodes a video file with ffmpeg: frames at `cfg.fps`, short side scaled to `cfg.side`
/// and centre-cropped to a square, grey or RGB.
pub fn read_video(path: &Path, cfg: &VideoConfig) -> Result<Clip> {
    cfg.validate()?;
    if !path.is_file() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such video file"),
        ));
    }
    let s = cfg.side;
    let mut filters = Vec::new();
    if cfg.fps > 0.0 {
        filters.push(format!("fps={}", cfg.fps));
    }
    filters.push(format!(
        "scale={s}:{s}:force_original_aspect_ratio=increase:flags=area,crop={s}:{s}"
    ));
    let mut cmd = Command::new(&cfg.ffmpeg);
    cmd.args(["-v", "error", "-nostdin", "-i"]).arg(path).args([
        "-an",
        "-sn",
        "-vf",
        &filters.join(","),
    ]);
    if cfg.max_frames > 0 {
        cmd.args(["-frames:v", &cfg.max_frames.to_string()]);
    }
    cmd.args([
        "-f",
        "rawvideo",
        "-pix_fmt",
        if cfg.gray { "gray" } else { "rgb24" },
        "-",
    ])
    .stdin(Stdio::null());
    let out = cmd.output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::format(
                path,
                format!(
                    "cannot decode video: the program '{}' was not found (install ffmpeg, e.g. \
                     `apt-get install ffmpeg`, or set video.ffmpeg to its path)",
                    cfg.ffmpeg
                ),
            )
        } else {
            Error::format(path, format!("cannot run '{}': {e}", cfg.ffmpeg))
        }
    })?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last_line = stderr.lines().rev().find(|l| !l.trim().is_empty());
    if !out.status.success() {
        return Err(Error::format(
            path,
            format!(
                "ffmpeg could not decode it ({}): {}",
                out.status,
                last_line.unwrap_or("no message")
            ),
        ));
    }
    let c = cfg.channels();
    let frame = c * s * s;
    let n = out.stdout.len() / frame;
    if n == 0 {
        return Err(Error::format(
            path,
            format!(
                "ffmpeg decoded no video frame{}",
                last_line.map(|l| format!(": {l}")).unwrap_or_default()
            ),
        ));
    }
    // ffmpeg writes interleaved HWC pixels; frames are kept in CHW order.
    let mut frames = vec![0u8; n * frame];
    if c == 1 {
        frames.copy_from_slice(&out.stdout[..n * frame]);
    } else {
        for f in 0..n {
            let src = &out.stdout[f * frame..(f + 1) * frame];
            let dst = &mut frames[f * frame..(f + 1) * frame];
            for (p, px) in src.chunks_exact(3).enumerate() {
                for ch in 0..3 {
                    dst[ch * s * s + p] = px[ch];
                }
            }
        }
    }
    Ok(Clip {
        name: clip_name(path),
        frames,
        channels: c,
        side: s,
    })
}

/// Reads a folder of frame images (PNG, JPEG), in name order, as one clip.
pub fn read_frame_folder(dir: &Path, cfg: &VideoConfig) -> Result<Clip> {
    cfg.validate()?;
    let files = frame_files(dir)?;
    if files.is_empty() {
        return Err(Error::format(
            dir,
            format!(
                "no frame images ({}) in the folder",
                super::folder::IMAGE_FORMATS
            ),
        ));
    }
    let s = cfg.side;
    let take = if cfg.max_frames > 0 {
        cfg.max_frames.min(files.len())
    } else {
        files.len()
    };
    let mut frames = Vec::with_capacity(take * cfg.channels() * s * s);
    for f in &files[..take] {
        let rgb = super::folder::load_image(f, s)?;
        if cfg.gray {
            frames.extend(crate::pretext::frames::rgb_to_gray(&rgb, s * s));
        } else {
            frames.extend(rgb);
        }
    }
    Ok(Clip {
        name: clip_name(dir),
        frames,
        channels: cfg.channels(),
        side: s,
    })
}

fn frame_files(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(super::folder::sorted_entries(dir)?
        .into_iter()
        .filter(|p| p.is_file() && super::folder::is_image(p))
        .collect())
}

/// Reads every clip at `path`: a video file, a folder of frame images, or a folder holding
/// video files and frame folders (one clip each, in name order).
pub fn load_clips(path: &Path, cfg: &VideoConfig) -> Result<Vec<Clip>> {
    if path.is_file() {
        return Ok(vec![read_video(path, cfg)?]);
    }
    if !path.is_dir() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such video file or folder"),
        ));
    }
    if !frame_files(path)?.is_empty() {
        return Ok(vec![read_frame_folder(path, cfg)?]);
    }
    let mut clips = Vec::new();
    for e in super::folder::sorted_entries(path)? {
        if e.is_file() && is_video_file(&e) {
            clips.push(read_video(&e, cfg)?);
        } else if e.is_dir() && !frame_files(&e)?.is_empty() {
            clips.push(read_frame_folder(&e, cfg)?);
        }
    }
    if clips.is_empty() {
        return Err(Error::format(
            path,
            format!(
                "no video files ({}) or folders of frame images in it",
                VIDEO_EXTENSIONS.join(", ")
            ),
        ));
    }
    Ok(clips)
}

/// The frames of `clips` as one data set: frames in clip order, label = clip index,
/// class names = clip names, [`Dataset::clips`] = each clip's frame range.
pub fn clips_to_dataset(clips: &[Clip]) -> Dataset {
    let (c, s) = clips.first().map_or((1, 0), |k| (k.channels, k.side));
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    let mut ranges = Vec::new();
    for (i, k) in clips.iter().enumerate() {
        let start = labels.len();
        pixels.extend_from_slice(&k.frames);
        labels.extend(std::iter::repeat_n(i as u32, k.len()));
        ranges.push(start..labels.len());
    }
    Dataset {
        pixels,
        labels: Some(labels),
        class_names: clips.iter().map(|k| k.name.clone()).collect(),
        channels: c,
        height: s,
        width: s,
        clips: ranges,
        sounds: None,
        paths: Vec::new(),
    }
}

/// An error unless every clip named in `holdout` is among the clip `names` read from `path`.
pub fn check_holdout(holdout: &[String], names: &[&str], path: &Path) -> Result<()> {
    for h in holdout {
        if !names.contains(&h.as_str()) {
            return Err(Error::Config(format!(
                "video.holdout names clip '{h}', which is not in {} (clips: {})",
                path.display(),
                names.join(", ")
            )));
        }
    }
    Ok(())
}

/// Train and test clips from `path`: `train/` and `test/` sub-folders when both exist;
/// otherwise the clips named in `cfg.holdout` (or, with none named, the last clip by name
/// when there are several) are the test split.
pub fn load_splits(path: &Path, cfg: &VideoConfig) -> Result<Splits> {
    let (tr, te) = (path.join("train"), path.join("test"));
    if tr.is_dir() && te.is_dir() {
        return Ok(Splits {
            train: clips_to_dataset(&load_clips(&tr, cfg)?),
            test: Some(clips_to_dataset(&load_clips(&te, cfg)?)),
        });
    }
    let clips = load_clips(path, cfg)?;
    let names: Vec<&str> = clips.iter().map(|k| k.name.as_str()).collect();
    check_holdout(&cfg.holdout, &names, path)?;
    let held = |k: &Clip| {
        if cfg.holdout.is_empty() {
            clips.len() > 1 && k.name == clips[clips.len() - 1].name
        } else {
            cfg.holdout.contains(&k.name)
        }
    };
    let (test, train): (Vec<Clip>, Vec<Clip>) = clips.iter().cloned().partition(|k| held(k));
    if train.is_empty() {
        return Err(Error::Config(format!(
            "video.holdout holds out every clip of {}: none is left to train on",
            path.display()
        )));
    }
    Ok(Splits {
        train: clips_to_dataset(&train),
        test: (!test.is_empty()).then(|| clips_to_dataset(&test)),
    })
}
