//! Permutation sets for jigsaw puzzles (Noroozi & Favaro 2016, section 3.2 and Algorithm 1):
//! `N` permutations of the 9 tiles chosen greedily, starting from a random one, each next one
//! being the permutation with the largest total Hamming distance to those already chosen.
//! A larger spread makes the puzzles easier to tell apart.
//!
//! A permutation `p` means: tile `j` of the puzzle is cell `p[j]` of the image.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How the next permutation is chosen among the remaining ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// The paper's Algorithm 1: the largest sum (mean) of Hamming distances to the chosen set.
    MaxMean,
    /// The largest minimal distance to the chosen set, ties broken by the largest sum (makes
    /// the closest pair of puzzles as different as possible).
    MaxMin,
}

/// Every permutation of `0..n` in lexicographic order (`n!` of them; meant for `n <= 9`).
pub fn all_permutations(n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut p: Vec<u8> = (0..n as u8).collect();
    loop {
        out.push(p.clone());
        // Next permutation in lexicographic order.
        let Some(i) = (1..n).rev().find(|&i| p[i - 1] < p[i]) else {
            return out;
        };
        let j = (i..n)
            .rev()
            .find(|&j| p[j] > p[i - 1])
            .expect("a larger element exists");
        p.swap(i - 1, j);
        p[i..].reverse();
    }
}

/// Number of positions where `a` and `b` differ.
pub fn hamming(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x != y).count()
}

/// Packs a permutation of at most 16 elements in 4 bits per position.
fn pack(p: &[u8]) -> u64 {
    p.iter()
        .enumerate()
        .fold(0, |acc, (i, &v)| acc | (v as u64) << (4 * i))
}

/// Hamming distance of two packed permutations: the number of nibbles that differ.
fn packed_hamming(a: u64, b: u64) -> u32 {
    let x = a ^ b;
    let nonzero = (x | x >> 1 | x >> 2 | x >> 3) & 0x1111_1111_1111_1111;
    nonzero.count_ones()
}

/// Chooses `count` permutations of `0..tiles` greedily for maximal Hamming distance (see the
/// module docs), starting from a permutation drawn with `seed`. Deterministic given its
/// arguments. Panics if `count` exceeds `tiles!` or `tiles > 9`.
pub fn max_hamming_set(
    tiles: usize,
    count: usize,
    selection: Selection,
    seed: u64,
) -> Vec<Vec<u8>> {
    assert!(tiles <= 9, "at most 9 tiles");
    let all = all_permutations(tiles);
    assert!(
        count <= all.len(),
        "{count} permutations of {tiles} tiles do not exist"
    );
    let packed: Vec<u64> = all.iter().map(|p| pack(p)).collect();
    let mut sum = vec![0u32; all.len()];
    let mut min = vec![u32::MAX; all.len()];
    let mut taken = vec![false; all.len()];
    let mut chosen = Vec::with_capacity(count);
    let mut next = ChaCha8Rng::seed_from_u64(seed).random_range(0..all.len());
    for _ in 0..count {
        taken[next] = true;
        chosen.push(all[next].clone());
        let p = packed[next];
        for (k, &q) in packed.iter().enumerate() {
            let d = packed_hamming(p, q);
            sum[k] += d;
            min[k] = min[k].min(d);
        }
        // The first best candidate in lexicographic order wins ties.
        let key = |k: usize| match selection {
            Selection::MaxMean => (sum[k], 0),
            Selection::MaxMin => (min[k], sum[k]),
        };
        let mut best: Option<usize> = None;
        for k in (0..all.len()).filter(|&k| !taken[k]) {
            if best.is_none_or(|b| key(k) > key(b)) {
                best = Some(k);
            }
        }
        match best {
            Some(b) => next = b,
            None => break,
        }
    }
    chosen
}

/// Minimal and mean Hamming distance over all pairs of `set`.
pub fn distance_stats(set: &[Vec<u8>]) -> (usize, f64) {
    let (mut lo, mut total, mut pairs) = (usize::MAX, 0usize, 0usize);
    for i in 0..set.len() {
        for j in i + 1..set.len() {
            let d = hamming(&set[i], &set[j]);
            lo = lo.min(d);
            total += d;
            pairs += 1;
        }
    }
    (
        if pairs == 0 { 0 } else { lo },
        total as f64 / pairs.max(1) as f64,
    )
}
