//! Rotations by multiples of 90 degrees (Gidaris et al. 2018; PIRL's rotation variant).

use crate::data::loader::HostTensor;

/// Rotates the square `c x s x s` image `img` counter-clockwise by `quarter_turns * 90`
/// degrees (as `numpy.rot90` on the last two axes).
pub fn rotate90(img: &[f32], c: usize, s: usize, quarter_turns: u8) -> Vec<f32> {
    let mut out = vec![0.0; c * s * s];
    for ch in 0..c {
        let plane = &img[ch * s * s..(ch + 1) * s * s];
        let dst = &mut out[ch * s * s..(ch + 1) * s * s];
        for y in 0..s {
            for x in 0..s {
                // Output pixel (y, x) reads source pixel (sy, sx).
                let (sy, sx) = match quarter_turns % 4 {
                    0 => (y, x),
                    1 => (x, s - 1 - y),
                    2 => (s - 1 - y, s - 1 - x),
                    _ => (s - 1 - x, y),
                };
                dst[y * s + x] = plane[sy * s + sx];
            }
        }
    }
    out
}

/// Rotates image `i` of a batch of square views by `turns[i]` quarter turns.
pub fn rotate_batch(views: &HostTensor, turns: &[u8]) -> HostTensor {
    let [b, c, h, w] = views.shape;
    assert_eq!(h, w, "rotations need square views");
    assert_eq!(turns.len(), b, "one rotation per image");
    let per = c * h * w;
    let mut data = Vec::with_capacity(b * per);
    for (i, &t) in turns.iter().enumerate() {
        data.extend(rotate90(&views.data[i * per..(i + 1) * per], c, h, t));
    }
    HostTensor {
        data,
        shape: views.shape,
    }
}
