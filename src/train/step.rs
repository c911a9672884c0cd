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

/// One update whose loss is a statistic of the whole batch (a cross-correlation, a
/// variance, the other images as negatives). `loss_of` gets `parts` (each `[b, d]`, this
/// rank's rows, in the autodiff graph) and returns the batch's loss. In one process this is
/// [`update`] of `loss_of(parts)`. Over several ranks `loss_of` gets every rank's rows,
/// stacked in rank order, so every rank computes the same loss of the global batch; the
/// gradient of each rank's own rows flows back through its network
/// ([`crate::dist::GatheredRows`]), and the parameters move as in one process with the
/// global batch.
pub fn update_on_whole_batch<M: Module>(
    model: M,
    parts: Vec<Tensor<2>>,
    loss_of: impl FnOnce(Vec<Tensor<2>>) -> Tensor<1>,
    opt: &mut Optimizer,
    lr: f64,
    step: u64,
    what: &str,
) -> Result<(M, f32)> {
    if crate::dist::world_size() == 1 {
        return update(model, loss_of(parts), opt, lr, step, what);
    }
    let gathered: Vec<crate::dist::GatheredRows> = parts
        .into_iter()
        .map(crate::dist::gather_rows_with_grad)
        .collect();
    let loss = loss_of(gathered.iter().map(|g| g.gathered.clone()).collect());
    let value = finite_scalar(&loss, step, what)?;
    let grads = loss.backward();
    let surrogate = gathered
        .into_iter()
        .map(|g| {
            let d = g
                .gathered
                .grad(&grads)
                .unwrap_or_else(|| g.gathered.zeros_like());
            g.surrogate(d)
        })
        .reduce(|a, b| a + b)
        .expect("at least one part");
    let grads = GradientsParams::from_grads(surrogate.backward(), &model);
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
