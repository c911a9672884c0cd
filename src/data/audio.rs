//! Sound: audio files decoded by symphonia (Ogg Vorbis, WAV, MP3, AAC in MP4/M4A), the sound
//! tracks of video files through the `ffmpeg` program, mixed down to mono and resampled to a
//! fixed rate with a windowed-sinc interpolator.

use crate::error::{Error, Result};
use std::path::Path;
use std::process::{Command, Stdio};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CODEC_TYPE_NULL, DecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// Mono samples in `[-1, 1]` at a sample rate.
#[derive(Clone, Debug, PartialEq)]
pub struct Audio {
    /// The samples.
    pub samples: Vec<f32>,
    /// Samples per second.
    pub rate: u32,
}

impl Audio {
    /// Duration in seconds.
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / self.rate.max(1) as f64
    }
}

/// Decodes an audio file (Ogg Vorbis, WAV, MP3, AAC) and mixes its channels to mono.
pub fn read_audio(path: &Path) -> Result<Audio> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let bad = |m: String| Error::format(path, m);
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            mss,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(|e| bad(format!("not a readable audio file: {e}")))?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| bad("no audio track".into()))?;
    let track_id = track.id;
    let rate = track
        .codec_params
        .sample_rate
        .ok_or_else(|| bad("the audio track has no sample rate".into()))?;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| bad(format!("unsupported audio codec: {e}")))?;
    let mut samples = Vec::new();
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break;
            }
            Err(SymphoniaError::ResetRequired) => break,
            Err(e) => return Err(bad(format!("corrupt audio stream: {e}"))),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            // A damaged packet is skipped, as players do.
            Err(SymphoniaError::DecodeError(_)) => continue,
            Err(e) => return Err(bad(format!("cannot decode audio: {e}"))),
        };
        let spec = *decoded.spec();
        let channels = spec.channels.count().max(1);
        let mut buf = SampleBuffer::<f32>::new(decoded.capacity() as u64, spec);
        buf.copy_interleaved_ref(decoded);
        samples.extend(
            buf.samples()
                .chunks_exact(channels)
                .map(|frame| frame.iter().sum::<f32>() / channels as f32),
        );
    }
    if samples.is_empty() {
        return Err(bad("no audio samples decoded".into()));
    }
    Ok(Audio { samples, rate })
}

/// The sound track of a video file, mono at `rate`, decoded by the `ffmpeg` program; an
/// error naming the file when it has none (see [`video_sound_track`]).
pub fn read_video_audio(path: &Path, rate: u32, ffmpeg: &str) -> Result<Audio> {
    video_sound_track(path, rate, ffmpeg)?
        .ok_or_else(|| Error::format(path, "the video has no sound track"))
}

/// The sound track of a video file, mono at `rate`, decoded by the `ffmpeg` program: `None`
/// when ffmpeg reads the file and finds no sound stream in it; an error when the file is
/// missing or ffmpeg cannot read it.
pub fn video_sound_track(path: &Path, rate: u32, ffmpeg: &str) -> Result<Option<Audio>> {
    if !path.is_file() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such video file"),
        ));
    }
    let out = Command::new(ffmpeg)
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(path)
        .args([
            "-vn",
            "-sn",
            "-ac",
            "1",
            "-ar",
            &rate.to_string(),
            "-f",
            "f32le",
            "-",
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            Error::format(
                path,
                format!("cannot run '{ffmpeg}' to read the sound track: {e} (install ffmpeg)"),
            )
        })?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // ffmpeg's words for an input with no stream left once video and subtitles are dropped.
    let no_stream =
        stderr.contains("does not contain any stream") || stderr.contains("matches no streams");
    if (out.status.success() || no_stream) && out.stdout.len() < 4 {
        return Ok(None);
    }
    if !out.status.success() {
        return Err(Error::format(
            path,
            format!(
                "ffmpeg cannot read the sound track: {}",
                stderr.lines().last().unwrap_or("no message")
            ),
        ));
    }
    let samples = out
        .stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(Some(Audio { samples, rate }))
}

/// Reads `path` as audio at `rate`: audio files through symphonia (then resampled), video
/// files through ffmpeg.
pub fn load(path: &Path, rate: u32, ffmpeg: &str) -> Result<Audio> {
    if super::video::is_video_file(path) {
        read_video_audio(path, rate, ffmpeg)
    } else {
        Ok(resample(&read_audio(path)?, rate))
    }
}

/// Resamples to `rate` by windowed-sinc interpolation (Hann window, 16 zero crossings each
/// side), low-passing at the lower of the two Nyquist frequencies.
pub fn resample(audio: &Audio, rate: u32) -> Audio {
    if audio.rate == rate || audio.samples.is_empty() {
        return Audio {
            samples: audio.samples.clone(),
            rate,
        };
    }
    const ZEROS: f64 = 16.0;
    let ratio = rate as f64 / audio.rate as f64;
    // Cut-off as a fraction of the input rate's Nyquist frequency.
    let cutoff = ratio.min(1.0);
    let half = ZEROS / cutoff;
    let n_out = (audio.samples.len() as f64 * ratio).round() as usize;
    let x = &audio.samples;
    let samples = (0..n_out)
        .map(|j| {
            let t = j as f64 / ratio;
            let lo = (t - half).ceil().max(0.0) as usize;
            let hi = ((t + half).floor() as usize).min(x.len() - 1);
            let mut acc = 0.0f64;
            for (i, &v) in x.iter().enumerate().take(hi + 1).skip(lo) {
                let d = i as f64 - t;
                let arg = std::f64::consts::PI * d * cutoff;
                let sinc = if arg.abs() < 1e-12 {
                    1.0
                } else {
                    arg.sin() / arg
                };
                let w = 0.5 + 0.5 * (std::f64::consts::PI * d / half).cos();
                acc += v as f64 * sinc * w * cutoff;
            }
            acc as f32
        })
        .collect();
    Audio { samples, rate }
}
