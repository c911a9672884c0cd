//! Siamese (non-contrastive) methods: two views of an image must agree, with no negatives.
//! Collapse is prevented by a predictor with a stop-gradient (SimSiam), plus a momentum
//! target (BYOL), or by a statistic of the batch: the cross-correlation of the two views
//! (Barlow Twins), or the variance and covariance of each view's embeddings (VICReg).

pub mod barlow_twins;
pub mod byol;
pub mod simsiam;
pub mod vicreg;

use crate::data::loader::HostBatch;
use crate::nn::Backbone;
use crate::nn::heads::Mlp;
use burn::prelude::*;

/// The two views of a batch through `backbone` and `projector` as one batch of `2B` (so
/// BatchNorm sees both views): their embeddings `(z1, z2)`, each `[B, D]`.
pub fn embed_two_views(
    backbone: &Backbone,
    projector: &Mlp,
    batch: &HostBatch,
    device: &Device,
) -> (Tensor<2>, Tensor<2>) {
    let b = batch.indices.len();
    let x = Tensor::cat(
        vec![
            batch.views[0].to_tensor(device),
            batch.views[1].to_tensor(device),
        ],
        0,
    );
    let z = projector.forward(backbone.forward(x));
    (z.clone().narrow(0, 0, b), z.narrow(0, b, b))
}

/// Mean over dimensions of the standard deviation over the batch of the L2-normalized rows of
/// `z`: about `1/sqrt(D)` for spread embeddings, 0 when they collapse to one point (SimSiam's
/// collapse monitor, section 4.1 of the paper).
pub fn normalized_std(z: &Tensor<2>) -> f32 {
    let n = crate::losses::l2_normalize(z.clone().detach());
    let centred = n.clone() - n.mean_dim(0);
    centred
        .powi_scalar(2)
        .mean_dim(0)
        .sqrt()
        .mean()
        .into_scalar()
}
