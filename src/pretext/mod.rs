//! Transforms that make a pretext task's input (and, for pretext tasks, its label) from an
//! image: tiles of a grid (jigsaw, relative position, PIRL), quarter-turn rotations,
//! permutation sets, inpainting masks and the quantized Lab colour space of colorization; from
//! video: frame motion, order tuples and odd-one questions. Signal features that are not
//! views (log-mel spectrograms, tracked patches) live in [`crate::features`].

pub mod frames;
pub mod lab;
pub mod masks;
pub mod permutations;
pub mod rotation;
pub mod tiles;
