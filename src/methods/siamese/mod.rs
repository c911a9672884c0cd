//! Siamese (non-contrastive) methods: two views of an image must agree, with no negatives.
//! Collapse is prevented by a predictor with a stop-gradient (SimSiam), plus a momentum
//! target (BYOL), or by a statistic of the batch: the cross-correlation of the two views
//! (Barlow Twins), or the variance and covariance of each view's embeddings (VICReg), or by
//! centring and sharpening a momentum teacher's outputs (DINO, self-distillation across
//! crops). The encoder, online network and momentum pair of the two-view ones are in
//! [`crate::methods::two_view`].

pub mod barlow_twins;
pub mod byol;
pub mod dino;
pub mod simsiam;
pub mod vicreg;
