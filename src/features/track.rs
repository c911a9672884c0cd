//! Patches that move, followed through a clip: the self-supervision of "Unsupervised Learning
//! of Visual Representations using Videos" (Wang & Gupta, ICCV 2015).
//!
//! A moving patch is the square with the largest frame difference to the next frame; a
//! [`Tracker`] follows it by normalized cross-correlation (NCC) template matching in a search
//! window around its last position. Frames are grey `u8` images of a [`Dataset`] with clips.

use crate::augment::Image;
use crate::data::Dataset;

/// A square patch position: top-left corner `(y, x)` in a frame.
pub type Place = (usize, usize);

/// The grey values (`[0, 1]`) of the `side` x `side` patch at `place` of image `i` (first
/// channel).
pub fn patch(data: &Dataset, i: usize, place: Place, side: usize) -> Vec<f32> {
    let (w, px) = (data.width, data.image(i));
    let mut out = Vec::with_capacity(side * side);
    for y in place.0..place.0 + side {
        out.extend(
            px[y * w + place.1..y * w + place.1 + side]
                .iter()
                .map(|&v| v as f32 / 255.0),
        );
    }
    out
}

/// The patch as a one-channel [`Image`].
pub fn patch_image(data: &Dataset, i: usize, place: Place, side: usize) -> Image {
    Image {
        data: patch(data, i, place, side),
        channels: 1,
        height: side,
        width: side,
    }
}

/// Normalized cross-correlation of two equally sized patches, in `[-1, 1]`: the correlation
/// of their zero-mean values (0 when either is flat).
pub fn ncc(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len() as f32;
    let (ma, mb) = (a.iter().sum::<f32>() / n, b.iter().sum::<f32>() / n);
    let (mut ab, mut aa, mut bb) = (0f32, 0f32, 0f32);
    for (&x, &y) in a.iter().zip(b) {
        let (dx, dy) = (x - ma, y - mb);
        ab += dx * dy;
        aa += dx * dx;
        bb += dy * dy;
    }
    if aa <= 1e-12 || bb <= 1e-12 {
        0.0
    } else {
        ab / (aa * bb).sqrt()
    }
}

/// The `side`-pixel square (corners on a grid of `stride` pixels) where frames `i` and
/// `i + 1` differ most, with that mean absolute difference (in `[0, 1]`).
pub fn most_moving_patch(data: &Dataset, i: usize, side: usize, stride: usize) -> (Place, f32) {
    let (h, w) = (data.height, data.width);
    let (a, b) = (data.image(i), data.image(i + 1));
    // Integral image of the absolute difference.
    let mut sat = vec![0u32; (h + 1) * (w + 1)];
    for y in 0..h {
        let mut row = 0u32;
        for x in 0..w {
            row += (a[y * w + x] as i32 - b[y * w + x] as i32).unsigned_abs();
            sat[(y + 1) * (w + 1) + x + 1] = sat[y * (w + 1) + x + 1] + row;
        }
    }
    let sum = |y: usize, x: usize| {
        let (y1, x1) = (y + side, x + side);
        sat[y1 * (w + 1) + x1] + sat[y * (w + 1) + x]
            - sat[y * (w + 1) + x1]
            - sat[y1 * (w + 1) + x]
    };
    let mut best = ((0, 0), 0u32);
    for y in (0..=h - side).step_by(stride.max(1)) {
        for x in (0..=w - side).step_by(stride.max(1)) {
            let s = sum(y, x);
            if s > best.1 {
                best = ((y, x), s);
            }
        }
    }
    (best.0, best.1 as f32 / (255.0 * (side * side) as f32))
}

/// A template-matching tracker: the patch of the first frame is the template; in each next
/// frame every position within `search` pixels of the last one is scored by NCC with it, and
/// the best becomes the new position.
#[derive(Clone, Copy, Debug)]
pub struct Tracker {
    /// Side of the tracked square.
    pub side: usize,
    /// Search radius around the last position, in pixels.
    pub search: usize,
}

/// Where a tracker went: the position in each frame followed, and the NCC of the patch
/// there with the template.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackPath {
    /// Frame indices, first to last.
    pub frames: Vec<usize>,
    /// Position in each of them.
    pub places: Vec<Place>,
    /// NCC with the template in each (1 in the first).
    pub scores: Vec<f32>,
}

impl Tracker {
    /// Follows the patch at `start` of image `first` through images `first + 1 ..= last`.
    pub fn track(&self, data: &Dataset, first: usize, last: usize, start: Place) -> TrackPath {
        let template = patch(data, first, start, self.side);
        let (h, w) = (data.height, data.width);
        let mut out = TrackPath {
            frames: vec![first],
            places: vec![start],
            scores: vec![1.0],
        };
        let mut at = start;
        for f in first + 1..=last {
            let (y0, y1) = (
                at.0.saturating_sub(self.search),
                (at.0 + self.search).min(h - self.side),
            );
            let (x0, x1) = (
                at.1.saturating_sub(self.search),
                (at.1 + self.search).min(w - self.side),
            );
            let mut best = (at, f32::NEG_INFINITY);
            for y in y0..=y1 {
                for x in x0..=x1 {
                    let s = ncc(&template, &patch(data, f, (y, x), self.side));
                    // Ties go to the smaller move.
                    let closer = |p: Place| p.0.abs_diff(at.0) + p.1.abs_diff(at.1);
                    if s > best.1 || (s == best.1 && closer((y, x)) < closer(best.0)) {
                        best = ((y, x), s);
                    }
                }
            }
            at = best.0;
            out.frames.push(f);
            out.places.push(at);
            out.scores.push(best.1);
        }
        out
    }
}

/// A tracked pair: the moving patch in one frame and where the tracker found it `gap`
/// frames later.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrackedPair {
    /// Frame of the first patch.
    pub first: usize,
    /// Its position.
    pub start: Place,
    /// Frame of the tracked patch.
    pub last: usize,
    /// Its position.
    pub end: Place,
    /// NCC of the tracked patch with the first.
    pub score: f32,
}

/// How [`find_pairs`] looks for tracked pairs.
#[derive(Clone, Copy, Debug)]
pub struct PairSearch {
    /// The tracker.
    pub tracker: Tracker,
    /// Frames between the first patch and the tracked one.
    pub gap: usize,
    /// Start a track every this many frames.
    pub every: usize,
    /// Least mean absolute frame difference in the first patch for it to count as moving.
    pub min_motion: f32,
    /// Least NCC at the end of the track for the pair to be kept.
    pub min_score: f32,
}

/// Tracked pairs in every clip of `data`: from frame `t` (every `every` frames), the most
/// moving patch, if it moves enough, tracked `gap` frames on, kept if the tracker still
/// matches it well at the end.
pub fn find_pairs(data: &Dataset, search: &PairSearch) -> Vec<TrackedPair> {
    let side = search.tracker.side;
    let mut out = Vec::new();
    if data.height < side || data.width < side {
        return out;
    }
    for r in &data.clips {
        let mut t = r.start;
        while t + search.gap < r.end {
            let (place, motion) = most_moving_patch(data, t, side, 2);
            if motion >= search.min_motion {
                let path = search.tracker.track(data, t, t + search.gap, place);
                let score = *path.scores.last().expect("a track has frames");
                if score >= search.min_score {
                    out.push(TrackedPair {
                        first: t,
                        start: place,
                        last: t + search.gap,
                        end: *path.places.last().expect("a track has frames"),
                        score,
                    });
                }
            }
            t += search.every.max(1);
        }
    }
    out
}
