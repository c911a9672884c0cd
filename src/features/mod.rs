//! Signal features that are not views of an image: log-mel spectrograms of sounds (the audio
//! input of AVC and AVID) and patches tracked through video frames (the positives of the
//! tracking method).

pub mod mel;
pub mod track;
