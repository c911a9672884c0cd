//! RandomResizedCrop (Szegedy et al. 2015; torchvision's algorithm): pick a region whose area
//! and aspect ratio are drawn from ranges, then resample it bilinearly to the output size.

use super::Image;
use rand::Rng;

/// A crop region in pixels: top, left, height, width.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Region {
    /// Top row.
    pub top: f32,
    /// Left column.
    pub left: f32,
    /// Height in pixels.
    pub height: f32,
    /// Width in pixels.
    pub width: f32,
}

/// Draws the sides of a rectangle as torchvision's RandomResizedCrop and RandomErasing do: an
/// area of `area` times a fraction uniform in `scale`, an aspect ratio log-uniform in `ratio`;
/// returns `(sqrt(a r), sqrt(a / r))` rounded.
pub fn draw_sides<R: Rng>(
    area: f32,
    scale: (f32, f32),
    ratio: (f32, f32),
    rng: &mut R,
) -> (f32, f32) {
    let target = area * rng.random_range(scale.0..=scale.1);
    let ar = super::log_uniform(ratio, rng);
    ((target * ar).sqrt().round(), (target / ar).sqrt().round())
}

/// Draws a region as torchvision does: ten tries at a random area fraction in `scale` and a
/// log-uniform aspect ratio in `ratio`; falls back to the central crop.
pub fn sample_region<R: Rng>(
    h: usize,
    w: usize,
    scale: (f32, f32),
    ratio: (f32, f32),
    rng: &mut R,
) -> Region {
    let area = (h * w) as f32;
    for _ in 0..10 {
        let (cw, ch) = draw_sides(area, scale, ratio, rng);
        if cw >= 1.0 && ch >= 1.0 && cw <= w as f32 && ch <= h as f32 {
            let top = rng.random_range(0..=(h - ch as usize)) as f32;
            let left = rng.random_range(0..=(w - cw as usize)) as f32;
            return Region {
                top,
                left,
                height: ch,
                width: cw,
            };
        }
    }
    let in_ratio = w as f32 / h as f32;
    let (cw, ch) = if in_ratio < ratio.0 {
        (w as f32, (w as f32 / ratio.0).round())
    } else if in_ratio > ratio.1 {
        ((h as f32 * ratio.1).round(), h as f32)
    } else {
        (w as f32, h as f32)
    };
    Region {
        top: ((h as f32 - ch) / 2.0).floor(),
        left: ((w as f32 - cw) / 2.0).floor(),
        height: ch,
        width: cw,
    }
}

/// Resamples `region` of `img` to `out_h` x `out_w` with bilinear interpolation (pixel centres
/// aligned, as `align_corners=False`).
pub fn resized_crop(img: &Image, region: Region, out_h: usize, out_w: usize) -> Image {
    let mut out = vec![0.0f32; img.channels * out_h * out_w];
    let sy = region.height / out_h as f32;
    let sx = region.width / out_w as f32;
    let (ih, iw) = (img.height as isize, img.width as isize);
    let mut xs = Vec::with_capacity(out_w);
    for x in 0..out_w {
        let fx = (region.left + (x as f32 + 0.5) * sx - 0.5).clamp(0.0, (iw - 1) as f32);
        let x0 = fx.floor() as isize;
        let x1 = (x0 + 1).min(iw - 1);
        xs.push((x0 as usize, x1 as usize, fx - x0 as f32));
    }
    for y in 0..out_h {
        let fy = (region.top + (y as f32 + 0.5) * sy - 0.5).clamp(0.0, (ih - 1) as f32);
        let y0 = fy.floor() as isize;
        let y1 = (y0 + 1).min(ih - 1);
        let wy = fy - y0 as f32;
        for c in 0..img.channels {
            for (x, &(x0, x1, wx)) in xs.iter().enumerate() {
                let a = img.at(c, y0 as usize, x0) * (1.0 - wx) + img.at(c, y0 as usize, x1) * wx;
                let b = img.at(c, y1 as usize, x0) * (1.0 - wx) + img.at(c, y1 as usize, x1) * wx;
                out[(c * out_h + y) * out_w + x] = a * (1.0 - wy) + b * wy;
            }
        }
    }
    Image {
        data: out,
        channels: img.channels,
        height: out_h,
        width: out_w,
    }
}
