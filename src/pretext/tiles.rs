//! A grid of tiles cut from each image, as jigsaw puzzles (Noroozi & Favaro 2016) and PIRL
//! (Misra & van der Maaten 2019) use: the view is divided into `grid x grid` cells and a
//! `tile x tile` square is cut from each cell at a random offset (the jitter that leaves a gap
//! between neighbouring tiles, so edges cannot be matched).

use crate::data::loader::HostTensor;
use rand::Rng;

/// How tiles are cut.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TileGrid {
    /// Cells per side (3 for the 9-tile puzzles).
    pub grid: usize,
    /// Side of each tile in pixels (at most the cell side).
    pub tile: usize,
    /// Normalize each tile to zero mean and unit variance per channel (the jigsaw paper's
    /// guard against matching tiles by their low-level statistics).
    pub normalize_each: bool,
}

impl TileGrid {
    /// The 3x3 grid for views of side `size` with tiles of side `tile` (0: the cell side
    /// less one eighth, at least one pixel: the gap that stops tiles from being matched by
    /// their edges). `who` names the setting in the error when the tile does not fit a cell.
    pub fn fitted(
        size: usize,
        tile: usize,
        normalize_each: bool,
        who: &str,
    ) -> crate::Result<TileGrid> {
        let cell = size / 3;
        let tile = if tile > 0 {
            tile
        } else {
            cell.saturating_sub((cell / 8).max(1))
        };
        if tile == 0 || tile > cell {
            return Err(crate::Error::Config(format!(
                "{who} = {tile} px must be between 1 and the cell side {cell} px of {size} px views"
            )));
        }
        Ok(TileGrid {
            grid: 3,
            tile,
            normalize_each,
        })
    }

    /// Side of a cell for views of side `size`.
    pub fn cell(&self, size: usize) -> usize {
        size / self.grid
    }

    /// Cuts tiles from every image of `views` (`[b, c, s, s]`): tile `j` of image `i` is
    /// the cell `order[i][j]` (cells numbered row by row), at a random offset inside its
    /// cell. Every image gives the same number `n` of tiles (9 for a puzzle, 2 for a
    /// relative-position pair). Returns `[b * n, c, tile, tile]`, the tiles of image 0 first.
    pub fn cut<R: Rng>(&self, views: &HostTensor, order: &[Vec<usize>], rng: &mut R) -> HostTensor {
        let [b, c, h, w] = views.shape;
        let cell = self.cell(h.min(w));
        assert!(
            self.tile >= 1 && self.tile <= cell,
            "tile {} must fit in a cell of {cell} px",
            self.tile
        );
        let t = self.tile;
        let n = order.first().map_or(0, Vec::len);
        assert!(
            order.iter().all(|o| o.len() == n),
            "every image gives as many tiles"
        );
        let mut data = Vec::with_capacity(b * n * c * t * t);
        for (i, cells) in order.iter().enumerate().take(b) {
            let img = &views.data[i * c * h * w..(i + 1) * c * h * w];
            for &k in cells {
                let (gy, gx) = (k / self.grid, k % self.grid);
                let oy = gy * cell + rng.random_range(0..=cell - t);
                let ox = gx * cell + rng.random_range(0..=cell - t);
                for ch in 0..c {
                    let start = data.len();
                    for y in 0..t {
                        let row = ch * h * w + (oy + y) * w + ox;
                        data.extend_from_slice(&img[row..row + t]);
                    }
                    if self.normalize_each {
                        normalize(&mut data[start..]);
                    }
                }
            }
        }
        HostTensor {
            data,
            shape: [b * n, c, t, t],
        }
    }
}

/// The guard against the chromatic-aberration shortcut of Doersch et al. (2015, section 3):
/// with probability `prob` per tile of an RGB batch (`[n, 3, t, t]`), two of the three
/// channels are replaced by Gaussian noise of standard deviation `noise` ("colour dropping"),
/// so the network cannot locate a patch from how the lens shifted its colour channels.
/// Grey batches are left as they are.
pub fn drop_colors<R: Rng>(tiles: &mut HostTensor, prob: f32, noise: f32, rng: &mut R) {
    let [n, c, h, w] = tiles.shape;
    if c != 3 {
        return;
    }
    let plane = h * w;
    for i in 0..n {
        if rng.random::<f32>() >= prob {
            continue;
        }
        let keep = rng.random_range(0..3);
        for ch in (0..3).filter(|&ch| ch != keep) {
            let start = (i * 3 + ch) * plane;
            let samples = crate::augment::standard_normal(plane, rng);
            for (v, e) in tiles.data[start..start + plane].iter_mut().zip(samples) {
                *v = noise * e;
            }
        }
    }
}

fn normalize(v: &mut [f32]) {
    let n = v.len() as f32;
    let mean = v.iter().sum::<f32>() / n;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / n;
    let sd = var.sqrt().max(1e-3);
    v.iter_mut().for_each(|x| *x = (*x - mean) / sd);
}

/// An overlapping grid of patches, as CPC cuts images (van den Oord et al. 2018; Henaff et
/// al. 2019): `patch x patch` squares every `stride` pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PatchGrid {
    /// Side of a patch in pixels.
    pub patch: usize,
    /// Step between neighbouring patches in pixels.
    pub stride: usize,
}

impl PatchGrid {
    /// Patches per side for views of side `size` (0 if a patch does not fit).
    pub fn side(&self, size: usize) -> usize {
        if self.patch > size || self.stride == 0 {
            0
        } else {
            (size - self.patch) / self.stride + 1
        }
    }

    /// Cuts every image of `views` (`[b, c, s, s]`) into its `g x g` patches: returns
    /// `[b * g * g, c, patch, patch]`, image-major, then row by row.
    pub fn cut(&self, views: &HostTensor) -> HostTensor {
        let [b, c, h, w] = views.shape;
        let g = self.side(h.min(w));
        let p = self.patch;
        let mut data = Vec::with_capacity(b * g * g * c * p * p);
        for i in 0..b {
            let img = &views.data[i * c * h * w..(i + 1) * c * h * w];
            for gy in 0..g {
                for gx in 0..g {
                    for ch in 0..c {
                        for y in 0..p {
                            let row = ch * h * w + (gy * self.stride + y) * w + gx * self.stride;
                            data.extend_from_slice(&img[row..row + p]);
                        }
                    }
                }
            }
        }
        HostTensor {
            data,
            shape: [b * g * g, c, p, p],
        }
    }
}
