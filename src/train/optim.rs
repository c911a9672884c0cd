//! Optimizers: SGD with momentum (PyTorch semantics: no dampening), LARS (You et al. 2017, as
//! used by SimCLR), and AdamW (Loshchilov & Hutter 2019).
//!
//! The state of each parameter is keyed by the parameter's *path* (`backbone.blocks.0.conv.weight`),
//! not by burn's run-local parameter id, so it survives a checkpoint and `--resume` exactly.
//! Biases and normalization parameters (rank-1 tensors) get no weight decay and no LARS
//! adaptation, as in SimCLR and solo-learn.

use crate::nn::ParamPath;
use burn::module::{Module, ModuleMapper, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Which update rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// SGD with momentum.
    Sgd,
    /// LARS: SGD with momentum and a per-layer trust ratio.
    Lars,
    /// AdamW: Adam with decoupled weight decay.
    AdamW,
}

/// Optimizer settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerConfig {
    /// Update rule.
    pub kind: OptimizerKind,
    /// Momentum (SGD, LARS).
    pub momentum: f64,
    /// Nesterov momentum (SGD, LARS).
    pub nesterov: bool,
    /// Weight decay (L2 for SGD/LARS, decoupled for AdamW); not applied to rank-1 parameters.
    pub weight_decay: f64,
    /// LARS trust coefficient.
    pub lars_eta: f64,
    /// Clips LARS's per-layer rate at the global one (solo-learn's `clip_lars_lr`, from
    /// NVIDIA's LARC): a layer steps at `min(eta |w| / |g|, lr)` instead of
    /// `lr * eta |w| / |g|`, so no layer ever moves faster than the schedule allows.
    pub lars_clip: bool,
    /// AdamW first-moment decay.
    pub beta1: f64,
    /// AdamW second-moment decay.
    pub beta2: f64,
    /// AdamW epsilon.
    pub epsilon: f64,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig {
            kind: OptimizerKind::Lars,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 1e-5,
            lars_eta: 0.02,
            lars_clip: false,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
        }
    }
}

impl OptimizerConfig {
    /// Checks ranges.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| Err(crate::Error::Config(m));
        if !(0.0..1.0).contains(&self.momentum) {
            return bad(format!(
                "optim.momentum = {} must be in [0, 1)",
                self.momentum
            ));
        }
        if self.weight_decay < 0.0 {
            return bad(format!(
                "optim.weight_decay = {} must be non-negative",
                self.weight_decay
            ));
        }
        if self.lars_eta <= 0.0 {
            return bad(format!(
                "optim.lars_eta = {} must be positive",
                self.lars_eta
            ));
        }
        if !(0.0..1.0).contains(&self.beta1)
            || !(0.0..1.0).contains(&self.beta2)
            || self.epsilon <= 0.0
        {
            return bad("optim.beta1/beta2 must be in [0, 1) and epsilon positive".into());
        }
        Ok(())
    }
}

/// An optimizer with per-parameter state keyed by parameter path.
#[derive(Clone, Debug)]
pub struct Optimizer {
    /// The settings.
    pub config: OptimizerConfig,
    /// Number of updates applied so far (AdamW's bias correction uses it).
    pub steps: u64,
    /// State tensors per parameter path, flattened: `[momentum]` or `[m, v]`.
    pub state: BTreeMap<String, Vec<Tensor<1>>>,
}

impl Optimizer {
    /// A fresh optimizer.
    pub fn new(config: OptimizerConfig) -> Self {
        Optimizer {
            config,
            steps: 0,
            state: BTreeMap::new(),
        }
    }

    /// Applies one update with learning rate `lr` to every parameter of `module` that has a
    /// gradient in `grads`, and returns the updated module. In a data-parallel run the
    /// gradients are first averaged over the ranks ([`crate::dist::average_gradients`]).
    pub fn step<M: Module>(&mut self, lr: f64, module: M, grads: GradientsParams) -> M {
        self.steps += 1;
        let grads = crate::dist::average_gradients(&module, grads);
        let mut mapper = UpdateMapper {
            opt: self,
            lr,
            grads,
            path: ParamPath::default(),
        };
        module.map(&mut mapper)
    }

    fn update(
        &mut self,
        path: &str,
        w: Tensor<1>,
        g: Tensor<1>,
        lr: f64,
        is_vector: bool,
    ) -> Tensor<1> {
        let c = self.config;
        let wd = if is_vector { 0.0 } else { c.weight_decay };
        match c.kind {
            OptimizerKind::Sgd | OptimizerKind::Lars => {
                let mut g = if wd > 0.0 { g + w.clone() * wd } else { g };
                if c.kind == OptimizerKind::Lars && !is_vector {
                    let wn: f32 = w.clone().powi_scalar(2).sum().sqrt().into_scalar();
                    let gn: f32 = g.clone().powi_scalar(2).sum().sqrt().into_scalar();
                    if wn > 0.0 && gn > 0.0 {
                        let trust = c.lars_eta * wn as f64 / gn as f64;
                        let scale = if c.lars_clip && lr > 0.0 {
                            (trust / lr).min(1.0)
                        } else {
                            trust
                        };
                        g = g * scale;
                    }
                }
                if c.momentum > 0.0 {
                    let buf = match self.state.remove(path) {
                        Some(mut s) => s.remove(0) * c.momentum + g.clone(),
                        None => g.clone(),
                    };
                    g = if c.nesterov {
                        g + buf.clone() * c.momentum
                    } else {
                        buf.clone()
                    };
                    self.state.insert(path.to_string(), vec![buf]);
                }
                w - g * lr
            }
            OptimizerKind::AdamW => {
                let (m, v) = match self.state.remove(path) {
                    Some(mut s) => {
                        let v = s.pop().unwrap();
                        let m = s.pop().unwrap();
                        (
                            m * c.beta1 + g.clone() * (1.0 - c.beta1),
                            v * c.beta2 + g.powi_scalar(2) * (1.0 - c.beta2),
                        )
                    }
                    None => (
                        g.clone() * (1.0 - c.beta1),
                        g.powi_scalar(2) * (1.0 - c.beta2),
                    ),
                };
                let t = self.steps as i32;
                let bc1 = 1.0 - c.beta1.powi(t);
                let bc2 = 1.0 - c.beta2.powi(t);
                let update = (m.clone() / bc1) / ((v.clone() / bc2).sqrt() + c.epsilon);
                self.state.insert(path.to_string(), vec![m, v]);
                let w = if wd > 0.0 {
                    w.clone() - w * (lr * wd)
                } else {
                    w
                };
                w - update * lr
            }
        }
    }
}

/// Walks a module, updating each parameter that has a gradient.
struct UpdateMapper<'a> {
    opt: &'a mut Optimizer,
    lr: f64,
    grads: GradientsParams,
    path: ParamPath,
}

impl ModuleMapper for UpdateMapper<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        self.path.exit(container_type);
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let require_grad = tensor.is_require_grad();
        let dims = tensor.dims();
        let numel: usize = dims.iter().product();
        let w = tensor.inner().reshape([numel]);
        let g = grad.inner().reshape([numel]);
        let path = self.path.name();
        let updated = self.opt.update(&path, w, g, self.lr, D == 1).reshape(dims);
        let mut t = Tensor::from_inner(updated);
        if require_grad {
            t = t.require_grad();
        }
        Param::from_mapped_value(id, t, mapper)
    }
}
