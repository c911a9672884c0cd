//! Masks for inpainting (Pathak et al. 2016, context encoders, section 3.3): the region a
//! network must fill in, as a `0/1` map per image (1 = hidden).

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Which region is hidden.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskKind {
    /// A square in the centre (the paper's main setting: half the side).
    CentralSquare,
    /// Random square blocks until about the target fraction of the area is hidden (the
    /// paper's "random block" masks).
    RandomBlocks,
}

/// The mask of one `size x size` image, row-major, 1.0 where hidden. `fraction` is the side
/// of the central square relative to the image, or the area fraction covered by the random
/// blocks (each a quarter of the side).
pub fn make_mask<R: Rng>(kind: MaskKind, size: usize, fraction: f32, rng: &mut R) -> Vec<f32> {
    let mut m = vec![0.0f32; size * size];
    match kind {
        MaskKind::CentralSquare => {
            let side = ((size as f32 * fraction).round() as usize).clamp(1, size);
            let start = (size - side) / 2;
            for y in start..start + side {
                m[y * size + start..y * size + start + side].fill(1.0);
            }
        }
        MaskKind::RandomBlocks => {
            let block = (size / 4).max(1);
            let target = (fraction * (size * size) as f32).round() as usize;
            let mut covered = 0;
            // Each block adds at most block^2 pixels; the cap ends pathological draws.
            for _ in 0..64 * (size * size / (block * block)).max(1) {
                if covered >= target {
                    break;
                }
                let (y0, x0) = (
                    rng.random_range(0..=size - block),
                    rng.random_range(0..=size - block),
                );
                for y in y0..y0 + block {
                    for v in &mut m[y * size + x0..y * size + x0 + block] {
                        if *v == 0.0 {
                            *v = 1.0;
                            covered += 1;
                        }
                    }
                }
            }
        }
    }
    m
}
