//! Small random affine transforms (torchvision's `RandomAffine` with rotation and shear):
//! the view is rotated and sheared about its centre, resampled bilinearly, and pixels that
//! come from outside the image get `fill`. Crops already scale and translate, so this adds
//! what they cannot: a slightly tilted or slanted object, as in handwriting and photographed
//! garments.

use super::Image;
use rand::Rng;

/// Applies the affine map that rotates by `rotate_deg` and shears along x by `shear_deg`
/// (both in degrees, counter-clockwise positive) about the image centre. Each output pixel
/// reads the input at the inverse-mapped point, bilinearly; points outside read `fill`.
pub fn rotate_shear(img: &Image, rotate_deg: f32, shear_deg: f32, fill: f32) -> Image {
    let (h, w) = (img.height, img.width);
    let (cy, cx) = ((h as f32 - 1.0) / 2.0, (w as f32 - 1.0) / 2.0);
    let (a, s) = (rotate_deg.to_radians(), shear_deg.to_radians().tan());
    // Forward map M = R(a) * S, S = [[1, s], [0, 1]]; output (x, y) reads M^-1 (x, y).
    let (ca, sa) = (a.cos(), a.sin());
    let m = [ca, ca * s - sa, sa, sa * s + ca]; // [m00, m01, m10, m11], det = 1
    let inv = [m[3], -m[1], -m[2], m[0]];
    let mut out = vec![fill; img.data.len()];
    let plane = h * w;
    for y in 0..h {
        for x in 0..w {
            let (dx, dy) = (x as f32 - cx, y as f32 - cy);
            let sx = inv[0] * dx + inv[1] * dy + cx;
            let sy = inv[2] * dx + inv[3] * dy + cy;
            if sx <= -1.0 || sy <= -1.0 || sx >= w as f32 || sy >= h as f32 {
                continue;
            }
            let (x0, y0) = (sx.floor(), sy.floor());
            let (wx, wy) = (sx - x0, sy - y0);
            let (x0, y0) = (x0 as isize, y0 as isize);
            let read = |c: usize, yy: isize, xx: isize| {
                if yy < 0 || xx < 0 || yy >= h as isize || xx >= w as isize {
                    fill
                } else {
                    img.data[c * plane + yy as usize * w + xx as usize]
                }
            };
            for c in 0..img.channels {
                let top = read(c, y0, x0) * (1.0 - wx) + read(c, y0, x0 + 1) * wx;
                let bottom = read(c, y0 + 1, x0) * (1.0 - wx) + read(c, y0 + 1, x0 + 1) * wx;
                out[c * plane + y * w + x] = top * (1.0 - wy) + bottom * wy;
            }
        }
    }
    Image {
        data: out,
        ..img.clone()
    }
}

/// Rotation and shear drawn uniformly from `[-rotate_deg, rotate_deg]` and
/// `[-shear_deg, shear_deg]`, applied with black (0) fill.
pub fn random<R: Rng>(img: &Image, rotate_deg: f32, shear_deg: f32, rng: &mut R) -> Image {
    let r = if rotate_deg > 0.0 {
        rng.random_range(-rotate_deg..=rotate_deg)
    } else {
        0.0
    };
    let s = if shear_deg > 0.0 {
        rng.random_range(-shear_deg..=shear_deg)
    } else {
        0.0
    };
    rotate_shear(img, r, s, 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(h: usize, w: usize) -> Image {
        Image {
            data: (0..h * w).map(|i| i as f32 / (h * w) as f32).collect(),
            channels: 1,
            height: h,
            width: w,
        }
    }

    #[test]
    fn zero_angles_are_the_identity() {
        let img = ramp(7, 9);
        let out = rotate_shear(&img, 0.0, 0.0, 0.0);
        for (a, b) in img.data.iter().zip(&out.data) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn a_quarter_turn_moves_pixels_as_computed_by_hand() {
        // 3 x 3, centre (1, 1). Counter-clockwise by 90 degrees on screen coordinates
        // (y down): the output at (x, y) reads the input at R^-1 (x - 1, y - 1) + (1, 1).
        // For a = 90: inverse is [[0, 1], [-1, 0]], so output (x=2, y=1) reads
        // (dx=1, dy=0) -> (sx = 0*1 + 1*0 + 1, sy = -1*1 + 0 + 1) = (1, 0): input row 0, col 1.
        let img = ramp(3, 3);
        let out = rotate_shear(&img, 90.0, 0.0, -1.0);
        assert!((out.at(0, 1, 2) - img.at(0, 0, 1)).abs() < 1e-5);
        assert!((out.at(0, 1, 1) - img.at(0, 1, 1)).abs() < 1e-6);
        // Corners map onto corners: output (0, 0) reads (dx=-1, dy=-1) -> (0, 2).
        assert!((out.at(0, 0, 0) - img.at(0, 2, 0)).abs() < 1e-5);
    }

    #[test]
    fn shear_keeps_the_centre_row_and_shifts_the_others() {
        // Shear 45 degrees (s = 1): output (x, y) reads (x - s*(y - cy), y).
        let img = ramp(5, 5);
        let out = rotate_shear(&img, 0.0, 45.0, 0.0);
        for x in 0..5 {
            assert!((out.at(0, 2, x) - img.at(0, 2, x)).abs() < 1e-5);
        }
        // Row 3 (dy = 1) reads one column to the left; column 0 reads outside: fill.
        assert!((out.at(0, 3, 2) - img.at(0, 3, 1)).abs() < 1e-5);
        assert!(out.at(0, 3, 0).abs() < 1e-5);
    }
}
