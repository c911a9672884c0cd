//! The shared end of every training step: the loss must be finite, then backward through the
//! model and one optimizer update. A method computes its loss; these functions do the rest,
//! so a method file holds only what its paper says.

use crate::error::{Error, Result};
use crate::train::optim::Optimizer;
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::prelude::*;

/// What one training step reports.
#[derive(Clone, Debug, Default)]
pub struct StepOutput {
    /// The total loss that was minimized.
    pub loss: f32,
    /// Named loss terms or statistics worth logging (may be empty).
    pub terms: Vec<(String, f32)>,
}

/// Reads a scalar loss, failing on NaN or infinity (naming `what`). In a data-parallel run it
/// is the mean over the ranks, so they all see the same value and skip or stop together.
pub fn finite_scalar(loss: &Tensor<1>, step: u64, what: &str) -> Result<f32> {
    let local: f32 = loss.clone().into_scalar();
    let v = if crate::dist::world_size() > 1 {
        crate::dist::mean_f64(local as f64) as f32
    } else {
        local
    };
    if v.is_finite() {
        Ok(v)
    } else {
        Err(Error::NonFinite {
            step,
            what: format!("{what} = {v}"),
        })
    }
}

/// One update: checks that `loss` is finite (an error naming `what` and `step` if not), then
/// backward through `model` and an optimizer step with learning rate `lr`. Returns the
/// updated model and the loss value.
pub fn update<M: Module>(
    model: M,
    loss: Tensor<1>,
    opt: &mut Optimizer,
    lr: f64,
    step: u64,
    what: &str,
) -> Result<(M, f32)> {
    let value = finite_scalar(&loss, step, what)?;
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    Ok((opt.step(lr, model, grads), value))
}

/// One classification step: cross-entropy of `scores` against `labels`, then [`update`] of
/// `model`; the step's output logs the batch accuracy as `accuracy_name`.
#[allow(clippy::too_many_arguments)]
pub fn classification_step<M: Module>(
    model: &M,
    scores: Tensor<2>,
    labels: &[u32],
    opt: &mut Optimizer,
    lr: f64,
    step: u64,
    what: &str,
    accuracy_name: &str,
) -> Result<(M, StepOutput)> {
    let accuracy = crate::eval::batch_accuracy(&scores, labels);
    let loss = crate::losses::cross_entropy(scores, labels);
    let (model, value) = update(model.clone(), loss, opt, lr, step, what)?;
    Ok((
        model,
        StepOutput {
            loss: value,
            terms: vec![(accuracy_name.into(), accuracy)],
        },
    ))
}
