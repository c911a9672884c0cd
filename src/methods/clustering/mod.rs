//! Clustering methods: views of an image must agree on their assignment to learned prototypes.

pub mod swav;
