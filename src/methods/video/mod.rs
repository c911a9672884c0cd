//! Video methods: the signal is time, frame order (Shuffle & Learn, Odd-One-Out), tracked
//! patches (tracking) and frames close in time (time-contrastive).

pub mod odd_one_out;
pub mod shuffle_learn;
pub mod time_contrastive;
pub mod tracking;
