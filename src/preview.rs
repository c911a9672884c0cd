//! Picture grids of what a generative pretext task produces (inpainting fills, colorized
//! images): rows of images side by side in one PNG, each image scaled up by pixel repetition.

use crate::augment::Image;
use crate::error::{Error, Result};
use image::{Rgb, RgbImage};
use std::path::Path;

/// Space between images, in pixels.
const GAP: u32 = 4;

/// Writes `rows` (each a list of images in `[0, 1]`, grey or RGB, any sizes) to the PNG at
/// `path`, each image scaled by `scale`; row `r`, column `j` is `rows[r][j]`.
pub fn save_rows(path: &Path, rows: &[Vec<Image>], scale: u32) -> Result<()> {
    let cell_w = rows
        .iter()
        .flatten()
        .map(|i| i.width as u32 * scale)
        .max()
        .unwrap_or(1);
    let cell_h = rows
        .iter()
        .flatten()
        .map(|i| i.height as u32 * scale)
        .max()
        .unwrap_or(1);
    let cols = rows.iter().map(Vec::len).max().unwrap_or(1) as u32;
    let (w, h) = (
        cols * (cell_w + GAP) + GAP,
        rows.len() as u32 * (cell_h + GAP) + GAP,
    );
    let mut canvas = RgbImage::from_pixel(w.max(1), h.max(1), Rgb([255, 255, 255]));
    for (r, row) in rows.iter().enumerate() {
        for (j, img) in row.iter().enumerate() {
            let (x0, y0) = (
                GAP + j as u32 * (cell_w + GAP),
                GAP + r as u32 * (cell_h + GAP),
            );
            for y in 0..img.height {
                for x in 0..img.width {
                    let v = |c: usize| {
                        (img.at(c.min(img.channels - 1), y, x).clamp(0.0, 1.0) * 255.0).round()
                            as u8
                    };
                    let rgb = Rgb([v(0), v(1), v(2)]);
                    for dy in 0..scale {
                        for dx in 0..scale {
                            canvas.put_pixel(
                                x0 + x as u32 * scale + dx,
                                y0 + y as u32 * scale + dy,
                                rgb,
                            );
                        }
                    }
                }
            }
        }
    }
    canvas
        .save(path)
        .map_err(|e| Error::format(path, format!("cannot write the picture: {e}")))
}

/// The images of a `[b, c, h, w]` tensor of values in `[0, 1]`.
pub fn images_of(t: burn::tensor::Tensor<4>) -> Vec<Image> {
    let [b, c, h, w] = t.dims();
    let v: Vec<f32> = t
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 pixels");
    v.chunks(c * h * w)
        .take(b)
        .map(|px| Image {
            data: px.to_vec(),
            channels: c,
            height: h,
            width: w,
        })
        .collect()
}

/// Undoes a view's normalization (`x * std + mean` per channel) of image `i` of a
/// `[b, c, h, w]` host batch.
pub fn denormalize(
    batch: &crate::data::loader::HostTensor,
    i: usize,
    mean: &[f32],
    std: &[f32],
) -> Image {
    let [_, c, h, w] = batch.shape;
    let mut data = batch.data[i * c * h * w..(i + 1) * c * h * w].to_vec();
    for ch in 0..c {
        let (m, s) = (mean[ch.min(mean.len() - 1)], std[ch.min(std.len() - 1)]);
        for v in &mut data[ch * h * w..(ch + 1) * h * w] {
            *v = *v * s + m;
        }
    }
    Image {
        data,
        channels: c,
        height: h,
        width: w,
    }
}
