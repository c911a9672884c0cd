//! Audio-visual methods: an image and a sound must be told to belong together (AVC), or agree
//! across modalities within and across samples (AVID + CMA).

pub mod avc;
pub mod avid_cma;
