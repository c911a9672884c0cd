//! Learning-rate schedule: linear warm-up from `lr / warmup_steps` to `lr`, then a half-cosine
//! down to `final_lr` at the last step (SimCLR, solo-learn).

/// A warm-up + cosine schedule over a fixed number of steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WarmupCosine {
    /// Peak learning rate.
    pub lr: f64,
    /// Learning rate at the last step.
    pub final_lr: f64,
    /// Warm-up steps.
    pub warmup_steps: u64,
    /// Total steps.
    pub total_steps: u64,
}

impl WarmupCosine {
    /// The learning rate for step `step` (0-based).
    pub fn at(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let t = ((step - self.warmup_steps) as f64 / span as f64).min(1.0);
        self.final_lr + 0.5 * (self.lr - self.final_lr) * (1.0 + (std::f64::consts::PI * t).cos())
    }
}
