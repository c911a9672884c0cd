//! Video pretext transforms: frame motion, the high-motion windows that Shuffle & Learn draws
//! from, its order tuples, Odd-One-Out questions, and the crops that turn frame indices into
//! network input.
//!
//! Frames are images of a [`Dataset`] whose [`Dataset::clips`] give each clip's frame range.

use crate::augment::{Image, normalize};
use crate::data::Dataset;
use crate::error::{Error, Result};
use rand::Rng;
use rand::seq::SliceRandom;
use std::ops::Range;

/// Grey levels (ITU-R BT.601 luma, as ffmpeg's `gray`) of `plane` RGB pixels in CHW order.
pub fn rgb_to_gray(rgb: &[u8], plane: usize) -> Vec<u8> {
    (0..plane)
        .map(|p| {
            let (r, g, b) = (
                rgb[p] as f32,
                rgb[plane + p] as f32,
                rgb[2 * plane + p] as f32,
            );
            (0.299 * r + 0.587 * g + 0.114 * b)
                .round()
                .clamp(0.0, 255.0) as u8
        })
        .collect()
}

/// Motion between consecutive frames of `range`: element `i` is the mean absolute difference
/// of frames `range.start + i` and `range.start + i + 1`, in `[0, 1]` (`len - 1` values).
pub fn frame_motion(data: &Dataset, range: Range<usize>) -> Vec<f32> {
    let n = data.image_size().max(1) as f32 * 255.0;
    (range.start..range.end.saturating_sub(1))
        .map(|i| {
            let (a, b) = (data.image(i), data.image(i + 1));
            a.iter()
                .zip(b)
                .map(|(&x, &y)| (x as i32 - y as i32).unsigned_abs())
                .sum::<u32>() as f32
                / n
        })
        .collect()
}

/// Offsets (within a clip of `motion.len() + 1` frames) of the windows of `span` frames whose
/// mean motion (over their `span - 1` steps) is at least `threshold`.
pub fn motion_windows(motion: &[f32], span: usize, threshold: f32) -> Vec<usize> {
    let frames = motion.len() + 1;
    if span < 2 || frames < span {
        return Vec::new();
    }
    (0..=frames - span)
        .filter(|&s| {
            let m = &motion[s..s + span - 1];
            m.iter().sum::<f32>() / m.len() as f32 >= threshold
        })
        .collect()
}

/// Start frames (indices into `data`) of every window of `span` frames, over all clips, whose
/// mean motion is at least `threshold`. Errors when a clip has fewer than `span` frames, when
/// `data` has no clips, or when no window moves enough; `what` names the method in messages.
pub fn moving_windows(
    data: &Dataset,
    span: usize,
    threshold: f32,
    what: &str,
) -> Result<Vec<usize>> {
    Ok(moving_windows_by_clip(data, span, threshold, what)?.concat())
}

/// [`moving_windows`], one list per clip (empty for a clip that never moves enough).
pub fn moving_windows_by_clip(
    data: &Dataset,
    span: usize,
    threshold: f32,
    what: &str,
) -> Result<Vec<Vec<usize>>> {
    require_clips(data, what)?;
    let mut out = Vec::new();
    let mut most = 0f32;
    for (k, r) in data.clips.iter().enumerate() {
        if r.len() < span {
            return Err(Error::Config(format!(
                "clip '{}' has {} frames, fewer than the {span} that {what} needs",
                data.class_names.get(k).map_or("?", |s| s.as_str()),
                r.len()
            )));
        }
        let motion = frame_motion(data, r.clone());
        if span >= 2 {
            let mean = |s: usize| motion[s..s + span - 1].iter().sum::<f32>() / (span - 1) as f32;
            most = (0..=r.len() - span).map(mean).fold(most, f32::max);
        }
        out.push(
            motion_windows(&motion, span, threshold)
                .into_iter()
                .map(|s| r.start + s)
                .collect::<Vec<_>>(),
        );
    }
    if out.iter().all(|w| w.is_empty()) {
        return Err(Error::Config(format!(
            "no window of {span} frames moves enough for {what}: the most motion is {most:.4}, \
             below the threshold {threshold} (lower {what}.motion_threshold)"
        )));
    }
    Ok(out)
}

/// Errors unless `data` is video (has clips); `what` names the method that needs it.
pub fn require_clips(data: &Dataset, what: &str) -> Result<()> {
    if data.clips.is_empty() {
        return Err(Error::Config(format!(
            "{what} learns from video: give a video source (video:PATH), not still images"
        )));
    }
    Ok(())
}

/// Frame crops (`n` of them, `c` channels, `side` pixels, as [`FrameCrop::crop_into`] lays
/// them out) as a `[n, c, side, side]` tensor.
pub fn frames_tensor(
    px: Vec<f32>,
    n: usize,
    c: usize,
    side: usize,
    device: &burn::tensor::Device,
) -> burn::tensor::Tensor<4> {
    burn::tensor::Tensor::from_data(
        burn::tensor::TensorData::new(px, [n, c, side, side]),
        device,
    )
}

/// A Shuffle & Learn tuple: three frame indices and whether they are in temporal order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderTuple {
    /// The frames, in the order shown to the network.
    pub frames: [usize; 3],
    /// True when the middle frame lies between the other two in time (forward or backward).
    pub in_order: bool,
}

/// Draws a tuple from the window of `span` frames starting at `start` (Misra et al. 2016,
/// section 3.1): five frames `a < b < c < d < e`; a positive is `(b, c, d)`, a negative puts
/// a frame from outside, `(b, a, d)` or `(b, e, d)`. Either is shown backwards half of the
/// time, so direction carries no label. Needs `span >= 5`.
pub fn order_tuple<R: Rng>(start: usize, span: usize, positive: bool, rng: &mut R) -> OrderTuple {
    assert!(
        span >= 5,
        "a Shuffle & Learn window needs at least 5 frames"
    );
    let mut picks: Vec<usize> = rand::seq::index::sample(rng, span, 5)
        .into_iter()
        .map(|i| start + i)
        .collect();
    picks.sort_unstable();
    let [a, b, c, d, e] = [picks[0], picks[1], picks[2], picks[3], picks[4]];
    let mut frames = if positive {
        [b, c, d]
    } else if rng.random::<bool>() {
        [b, a, d]
    } else {
        [b, e, d]
    };
    if rng.random::<bool>() {
        frames.reverse();
    }
    OrderTuple {
        frames,
        in_order: positive,
    }
}

/// An Odd-One-Out question: `elements` sub-sequences of frame indices, all in temporal
/// order but one, whose frames are shuffled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OddQuestion {
    /// The sub-sequences, each `length` frame indices in the order shown.
    pub elements: Vec<Vec<usize>>,
    /// Which element is the odd one.
    pub odd: usize,
}

/// Draws a question (Fernando et al. 2017): `elements` sub-sequences of `length` frames
/// `stride` apart, each starting at one of `starts` (start frames of one clip's moving
/// windows, see [`moving_windows_by_clip`]); one, at a random position, has its frames in an
/// order that is neither the true one nor its reverse (so `length >= 3`).
pub fn odd_question<R: Rng>(
    starts: &[usize],
    elements: usize,
    length: usize,
    stride: usize,
    rng: &mut R,
) -> OddQuestion {
    assert!(length >= 3 && elements >= 2 && stride >= 1 && !starts.is_empty());
    let odd = rng.random_range(0..elements);
    let elements = (0..elements)
        .map(|i| {
            let s = starts[rng.random_range(0..starts.len())];
            let mut seq: Vec<usize> = (0..length).map(|t| s + t * stride).collect();
            if i == odd {
                let sorted = seq.clone();
                loop {
                    seq.shuffle(rng);
                    let reversed = seq.iter().rev().copied().collect::<Vec<_>>();
                    if seq != sorted && reversed != sorted {
                        break;
                    }
                }
            }
            seq
        })
        .collect();
    OddQuestion { elements, odd }
}

/// How frames become network input: a `side`-pixel square cut at one random place for all
/// frames of a tuple, each frame moved by up to `jitter` pixels on its own (so the network
/// cannot match frames by exact pixel positions), the whole tuple flipped with `flip_prob`,
/// then normalized.
#[derive(Clone, Debug)]
pub struct FrameCrop {
    /// Side of the crops.
    pub side: usize,
    /// Largest independent shift of each frame, in pixels.
    pub jitter: usize,
    /// Probability of mirroring the whole tuple.
    pub flip_prob: f32,
    /// Per-channel means subtracted.
    pub mean: Vec<f32>,
    /// Per-channel standard deviations divided by.
    pub std: Vec<f32>,
}

impl FrameCrop {
    /// Errors unless crops of `side` fit in the frames of `data`.
    pub fn check_fits(&self, data: &Dataset) -> Result<()> {
        if self.side > data.height.min(data.width) {
            return Err(Error::Config(format!(
                "views.size = {} is larger than the {}x{} frames",
                self.side, data.height, data.width
            )));
        }
        Ok(())
    }

    /// Crops of `frames` (indices into `data`) appended to `out`, CHW per frame. With `rng`
    /// `None`, the centre crop without jitter or flip (for evaluation).
    pub fn crop_into<R: Rng>(
        &self,
        data: &Dataset,
        frames: &[usize],
        rng: Option<&mut R>,
        out: &mut Vec<f32>,
    ) {
        let (h, w, c) = (data.height, data.width, data.channels);
        let s = self.side.min(h).min(w);
        let (cy, cx) = ((h - s) / 2, (w - s) / 2);
        let mut places = vec![(cy, cx); frames.len()];
        let mut flip = false;
        if let Some(rng) = rng {
            let (y0, x0) = (rng.random_range(0..=h - s), rng.random_range(0..=w - s));
            for p in places.iter_mut() {
                let j = self.jitter as i64;
                let dy = rng.random_range(-j..=j);
                let dx = rng.random_range(-j..=j);
                *p = (
                    (y0 as i64 + dy).clamp(0, (h - s) as i64) as usize,
                    (x0 as i64 + dx).clamp(0, (w - s) as i64) as usize,
                );
            }
            flip = rng.random::<f32>() < self.flip_prob;
        }
        for (&f, &(y0, x0)) in frames.iter().zip(&places) {
            let px = data.image(f);
            let mut img = Image {
                data: Vec::with_capacity(c * s * s),
                channels: c,
                height: s,
                width: s,
            };
            for ch in 0..c {
                for y in y0..y0 + s {
                    let row = ch * h * w + y * w + x0;
                    img.data
                        .extend(px[row..row + s].iter().map(|&v| v as f32 / 255.0));
                }
            }
            if flip {
                img.flip_horizontal();
            }
            normalize(&mut img, &self.mean, &self.std);
            out.extend_from_slice(&img.data);
        }
    }
}
