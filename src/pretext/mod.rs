//! Transforms that make a pretext task's input (and, for pretext tasks, its label) from an
//! image: tiles of a grid (jigsaw, PIRL) and quarter-turn rotations.

pub mod rotation;
pub mod tiles;
