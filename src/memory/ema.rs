//! Exponential moving averages of a module's tensors, outside autograd: the momentum
//! ("key", "target", "teacher") encoders of MoCo, BYOL and DINO.

use crate::nn::ParamPath;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use std::collections::HashMap;

struct Collect {
    paths: ParamPath,
    out: HashMap<String, Tensor<1>>,
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, ty: &str) {
        self.paths.enter(name, ty);
    }
    fn exit_module(&mut self, _name: &str, ty: &str) {
        self.paths.exit(ty);
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val().inner();
        let n: usize = t.dims().iter().product();
        self.out.insert(self.paths.name(), t.reshape([n]));
    }
}

struct Blend {
    paths: ParamPath,
    source: HashMap<String, Tensor<1>>,
    momentum: f64,
}

impl ModuleMapper for Blend {
    fn enter_module(&mut self, name: &str, ty: &str) {
        self.paths.enter(name, ty);
    }
    fn exit_module(&mut self, _name: &str, ty: &str) {
        self.paths.exit(ty);
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(s) = self.source.remove(&self.paths.name()) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let dims = tensor.dims();
        let n: usize = dims.iter().product();
        let t = tensor.inner().reshape([n]);
        let blended = (t * self.momentum + s * (1.0 - self.momentum)).reshape(dims);
        Param::from_mapped_value(id, Tensor::from_inner(blended), mapper)
    }
}

/// Returns `target` with every float tensor (parameters and running statistics) replaced by
/// `momentum * target + (1 - momentum) * source`, matched by path. The result tracks no
/// gradient: a momentum encoder is never trained by backpropagation.
pub fn ema_update<M: Module>(target: M, source: &M, momentum: f64) -> M {
    let mut c = Collect {
        paths: ParamPath::default(),
        out: HashMap::new(),
    };
    source.visit(&mut c);
    let mut b = Blend {
        paths: ParamPath::default(),
        source: c.out,
        momentum,
    };
    target.map(&mut b)
}

/// MoCo v3 / BYOL's cosine ramp of the momentum from `base` at step 0 to 1 at `total`.
pub fn cosine_momentum(base: f64, step: u64, total: u64) -> f64 {
    let t = step as f64 / total.max(1) as f64;
    1.0 - (1.0 - base) * ((std::f64::consts::PI * t.min(1.0)).cos() + 1.0) / 2.0
}
