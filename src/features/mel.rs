//! Log-mel spectrograms: a Hann-windowed short-time Fourier transform, its power folded into
//! triangular mel bands (HTK mel scale, `2595 log10(1 + f / 700)`), and the log of the band
//! energies — the input of the audio network in "Look, Listen and Learn".

use realfft::RealFftPlanner;
use serde::{Deserialize, Serialize};

/// Spectrogram settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MelConfig {
    /// Sample rate the audio is resampled to.
    pub sample_rate: u32,
    /// FFT window length in samples.
    pub n_fft: usize,
    /// Samples between two windows.
    pub hop: usize,
    /// Mel bands.
    pub n_mels: usize,
    /// Lowest band edge, in Hz.
    pub fmin: f32,
    /// Highest band edge, in Hz (at most half the sample rate).
    pub fmax: f32,
    /// Seconds of sound, centred on the frame, paired with each frame of a video (`av:`
    /// sources of video files).
    pub frame_seconds: f32,
}

impl Default for MelConfig {
    fn default() -> Self {
        MelConfig {
            sample_rate: 16_000,
            n_fft: 512,
            hop: 160,
            n_mels: 64,
            fmin: 0.0,
            fmax: 8_000.0,
            frame_seconds: 1.0,
        }
    }
}

impl MelConfig {
    /// Checks the values, naming the field at fault.
    pub fn validate(&self) -> crate::Result<()> {
        let nyquist = self.sample_rate as f32 / 2.0;
        if self.n_fft < 16 || self.hop == 0 || self.n_mels == 0 {
            return Err(crate::Error::Config(format!(
                "audio.n_fft = {} must be at least 16, hop and n_mels at least 1",
                self.n_fft
            )));
        }
        if !(self.frame_seconds > 0.0 && self.frame_seconds.is_finite()) {
            return Err(crate::Error::Config(format!(
                "audio.frame_seconds = {} must be positive",
                self.frame_seconds
            )));
        }
        if !(0.0 <= self.fmin && self.fmin < self.fmax && self.fmax <= nyquist) {
            return Err(crate::Error::Config(format!(
                "audio.fmin = {} and fmax = {} must satisfy 0 <= fmin < fmax <= {nyquist} (half the sample rate)",
                self.fmin, self.fmax
            )));
        }
        Ok(())
    }

    /// Frequency bins of one FFT frame (`n_fft / 2 + 1`).
    pub fn bins(&self) -> usize {
        self.n_fft / 2 + 1
    }
}

/// Hz to mel (HTK).
pub fn hz_to_mel(f: f32) -> f32 {
    2595.0 * (1.0 + f / 700.0).log10()
}

/// Mel to Hz (HTK).
pub fn mel_to_hz(m: f32) -> f32 {
    700.0 * (10f32.powf(m / 2595.0) - 1.0)
}

/// Centre frequency of each mel band, in Hz.
pub fn band_centres(cfg: &MelConfig) -> Vec<f32> {
    let (lo, hi) = (hz_to_mel(cfg.fmin), hz_to_mel(cfg.fmax));
    (1..=cfg.n_mels)
        .map(|i| mel_to_hz(lo + (hi - lo) * i as f32 / (cfg.n_mels + 1) as f32))
        .collect()
}

/// Triangular mel filters, `n_mels` rows of `bins()` weights: band `i` rises from the centre
/// of band `i - 1` to 1 at its own centre and falls to 0 at the centre of band `i + 1`.
pub fn mel_filterbank(cfg: &MelConfig) -> Vec<Vec<f32>> {
    let (lo, hi) = (hz_to_mel(cfg.fmin), hz_to_mel(cfg.fmax));
    let edges: Vec<f32> = (0..cfg.n_mels + 2)
        .map(|i| mel_to_hz(lo + (hi - lo) * i as f32 / (cfg.n_mels + 1) as f32))
        .collect();
    let bin_hz = cfg.sample_rate as f32 / cfg.n_fft as f32;
    (0..cfg.n_mels)
        .map(|m| {
            let (l, c, r) = (edges[m], edges[m + 1], edges[m + 2]);
            (0..cfg.bins())
                .map(|k| {
                    let f = k as f32 * bin_hz;
                    if f <= l || f >= r {
                        0.0
                    } else if f <= c {
                        (f - l) / (c - l)
                    } else {
                        (r - f) / (r - c)
                    }
                })
                .collect()
        })
        .collect()
}

/// The periodic Hann window of length `n`.
pub fn hann(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| 0.5 - 0.5 * (std::f32::consts::TAU * i as f32 / n as f32).cos())
        .collect()
}

/// Power spectrogram `|X_t(k)|^2`, frames of `n_fft` samples every `hop` (the last partial
/// window is dropped; a clip shorter than one window gives one zero-padded frame), Hann
/// window; `frames x (n_fft / 2 + 1)` row-major, and the number of frames.
pub fn power_spectrogram(samples: &[f32], n_fft: usize, hop: usize) -> (Vec<f32>, usize) {
    let mut planner = RealFftPlanner::<f32>::new();
    let fft = planner.plan_fft_forward(n_fft);
    let window = hann(n_fft);
    let frames = if samples.len() < n_fft {
        1
    } else {
        (samples.len() - n_fft) / hop + 1
    };
    let bins = n_fft / 2 + 1;
    let mut out = Vec::with_capacity(frames * bins);
    let mut input = fft.make_input_vec();
    let mut spectrum = fft.make_output_vec();
    for t in 0..frames {
        for (i, v) in input.iter_mut().enumerate() {
            *v = samples.get(t * hop + i).copied().unwrap_or(0.0) * window[i];
        }
        fft.process(&mut input, &mut spectrum)
            .expect("buffers sized by the planner");
        out.extend(spectrum.iter().map(|c| c.norm_sqr()));
    }
    (out, frames)
}

/// Log-mel spectrogram of `samples` (already at `cfg.sample_rate`): `ln(mel energy + 1e-6)`,
/// `n_mels x frames` row-major (bands as rows, time as columns, like an image), and the
/// number of frames.
pub fn log_mel(samples: &[f32], cfg: &MelConfig) -> (Vec<f32>, usize) {
    let (power, frames) = power_spectrogram(samples, cfg.n_fft, cfg.hop);
    let bank = mel_filterbank(cfg);
    let bins = cfg.bins();
    let mut out = vec![0f32; cfg.n_mels * frames];
    for (m, filter) in bank.iter().enumerate() {
        for t in 0..frames {
            let frame = &power[t * bins..(t + 1) * bins];
            let e: f32 = filter.iter().zip(frame).map(|(w, p)| w * p).sum();
            out[m * frames + t] = (e + 1e-6).ln();
        }
    }
    (out, frames)
}

/// A log-mel spectrogram: `n_mels` rows (bands) of `frames` columns (time).
#[derive(Clone, Debug, PartialEq)]
pub struct Spectrogram {
    /// Values, `n_mels x frames` row-major.
    pub data: Vec<f32>,
    /// Bands.
    pub n_mels: usize,
    /// Time frames.
    pub frames: usize,
}

impl Spectrogram {
    /// The log-mel spectrogram of `samples` (at `cfg.sample_rate`).
    pub fn of(samples: &[f32], cfg: &MelConfig) -> Spectrogram {
        let (data, frames) = log_mel(samples, cfg);
        Spectrogram {
            data,
            n_mels: cfg.n_mels,
            frames,
        }
    }

    /// Frames `start..start + width` (clamped to the spectrogram) as a spectrogram of their
    /// own.
    pub fn excerpt(&self, start: usize, width: usize) -> Spectrogram {
        let start = start.min(self.frames.saturating_sub(1));
        let width = width.min(self.frames.saturating_sub(start));
        Spectrogram {
            data: (0..self.n_mels)
                .flat_map(|m| &self.data[m * self.frames + start..m * self.frames + start + width])
                .copied()
                .collect(),
            n_mels: self.n_mels,
            frames: width,
        }
    }

    /// `width` frames starting at `start`, the clip repeated when it is shorter: `n_mels x
    /// width` row-major.
    pub fn window(&self, start: usize, width: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.n_mels * width);
        for m in 0..self.n_mels {
            let row = &self.data[m * self.frames..(m + 1) * self.frames];
            out.extend((0..width).map(|t| row[(start + t) % self.frames.max(1)]));
        }
        out
    }
}
