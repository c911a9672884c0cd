//! Pretext transforms against hand-made cases.

use selfsup::data::loader::HostTensor;
use selfsup::pretext::rotation::{rotate_batch, rotate90};
use selfsup::pretext::tiles::TileGrid;

#[test]
fn rotations_match_numpy_rot90() {
    // [[1, 2], [3, 4]]: np.rot90 gives [[2, 4], [1, 3]], then [[4, 3], [2, 1]], then [[3, 1], [4, 2]].
    let img = [1.0, 2.0, 3.0, 4.0];
    assert_eq!(rotate90(&img, 1, 2, 0), vec![1.0, 2.0, 3.0, 4.0]);
    assert_eq!(rotate90(&img, 1, 2, 1), vec![2.0, 4.0, 1.0, 3.0]);
    assert_eq!(rotate90(&img, 1, 2, 2), vec![4.0, 3.0, 2.0, 1.0]);
    assert_eq!(rotate90(&img, 1, 2, 3), vec![3.0, 1.0, 4.0, 2.0]);
    // Four quarter turns are the identity on a 3x3 two-channel image; per image in a batch.
    let img: Vec<f32> = (0..18).map(|v| v as f32).collect();
    let mut r = img.clone();
    for _ in 0..4 {
        r = rotate90(&r, 2, 3, 1);
    }
    assert_eq!(r, img);
    let batch = HostTensor {
        data: [[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]].concat(),
        shape: [2, 1, 2, 2],
    };
    let out = rotate_batch(&batch, &[0, 2]);
    assert_eq!(out.data, vec![1.0, 2.0, 3.0, 4.0, 4.0, 3.0, 2.0, 1.0]);
}

#[test]
fn tiles_come_from_their_cells_in_the_given_order() {
    // A 9x9 image whose pixel value is its cell number (row-major 3x3 grid of 3x3 cells).
    let data: Vec<f32> = (0..81)
        .map(|p| ((p / 9) / 3 * 3 + (p % 9) / 3) as f32)
        .collect();
    let views = HostTensor {
        data,
        shape: [1, 1, 9, 9],
    };
    let grid = TileGrid {
        grid: 3,
        tile: 2,
        normalize_each: false,
    };
    let order = vec![vec![8, 0, 4, 1, 2, 3, 5, 6, 7]];
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(3);
    let tiles = grid.cut(&views, &order, &mut rng);
    assert_eq!(tiles.shape, [9, 1, 2, 2]);
    for (j, &cell) in order[0].iter().enumerate() {
        // Jitter moves a tile inside its cell but never across a cell border.
        assert!(
            tiles.data[j * 4..(j + 1) * 4]
                .iter()
                .all(|&v| v == cell as f32),
            "tile {j} should be cut from cell {cell}"
        );
    }
    // Per-tile normalization: zero mean, unit variance.
    let ramp = HostTensor {
        data: (0..81).map(|v| v as f32).collect(),
        shape: [1, 1, 9, 9],
    };
    let norm = TileGrid {
        normalize_each: true,
        ..grid
    }
    .cut(&ramp, &[vec![0, 1, 2, 3, 4, 5, 6, 7, 8]], &mut rng);
    for t in norm.data.chunks(4) {
        let mean: f32 = t.iter().sum::<f32>() / 4.0;
        let var: f32 = t.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / 4.0;
        assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4);
    }
}

#[test]
fn patch_grid_overlaps_as_configured() {
    use selfsup::pretext::tiles::PatchGrid;
    let grid = PatchGrid {
        patch: 10,
        stride: 6,
    };
    assert_eq!(grid.side(28), 4);
    assert_eq!(grid.side(9), 0);
    // Pixel value = its column; patch (row 1, col 2) starts at column 12.
    let views = HostTensor {
        data: (0..2 * 28 * 28).map(|p| (p % 28) as f32).collect(),
        shape: [2, 1, 28, 28],
    };
    let p = grid.cut(&views);
    assert_eq!(p.shape, [32, 1, 10, 10]);
    let patch = &p.data[(16 + 4 + 2) * 100..(16 + 4 + 3) * 100];
    assert_eq!(patch[0], 12.0);
    assert_eq!(patch[9], 21.0);
    assert_eq!(patch[95], 17.0);
}
