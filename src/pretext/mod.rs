//! Transforms that make a pretext task's input (and, for pretext tasks, its label) from an
//! image: tiles of a grid (jigsaw, relative position, PIRL), quarter-turn rotations,
//! permutation sets, inpainting masks and the quantized Lab colour space of colorization; from
//! video: frame motion, order tuples, odd-one questions and tracked patches; from sound:
//! log-mel spectrograms.

pub mod frames;
pub mod lab;
pub mod masks;
pub mod mel;
pub mod permutations;
pub mod rotation;
pub mod tiles;
pub mod track;
