//! Probes of every stage of a frozen backbone (Goyal et al. 2019): each stage's feature map is
//! average-pooled to a grid small enough that the flattened feature has about `target_dim`
//! values, then scored by the linear probe. The lecture's point is that for pretext tasks the
//! last layers, specialized to the pretext, transfer worse than the middle ones.

use super::{Features, accuracy, linear};
use crate::augment::ViewConfig;
use crate::data::Dataset;
use crate::nn::Backbone;
use burn::module::Module;
use burn::tensor::module::adaptive_avg_pool2d;

/// One stage's probe.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LayerResult {
    /// Stage name (`block1`, `layer3`, ...).
    pub name: String,
    /// Channels x pooled height x pooled width.
    pub dim: usize,
    /// Pooled grid side.
    pub grid: usize,
    /// Linear-probe top-1 (%).
    pub accuracy: f64,
}

/// The grid side that brings a `c`-channel map of side `side` to about `target_dim` values.
pub fn pooled_side(c: usize, side: usize, target_dim: usize) -> usize {
    (((target_dim as f64) / c as f64).sqrt().floor() as usize).clamp(1, side.max(1))
}

/// Pooled, flattened features of every stage of `backbone` for every image of `data`.
pub fn stage_features(
    backbone: &Backbone,
    data: &Dataset,
    view: &ViewConfig,
    target_dim: usize,
    batch: usize,
) -> Vec<(Features, usize)> {
    let plain = backbone.valid();
    let device = crate::device::of(&plain);
    let view = view.eval_only();
    let mut out: Vec<(Features, usize)> = Vec::new();
    for start in (0..data.len()).step_by(batch.max(1)) {
        let end = (start + batch).min(data.len());
        let stages =
            plain.forward_stages(super::plain_batch(data, &view, start..end).to_tensor(&device));
        for (s, map) in stages.into_iter().enumerate() {
            let [b, c, h, w] = map.dims();
            let g = pooled_side(c, h.min(w), target_dim);
            let v: Vec<f32> = adaptive_avg_pool2d(map, [g, g])
                .reshape([b, c * g * g])
                .into_data()
                .convert::<f32>()
                .try_to_vec()
                .expect("f32 features");
            if out.len() <= s {
                out.push((
                    Features {
                        data: Vec::new(),
                        n: 0,
                        dim: c * g * g,
                    },
                    g,
                ));
            }
            out[s].0.data.extend(v);
            out[s].0.n += b;
        }
    }
    out
}

/// Probes every stage: features of `train` and `test`, a linear probe per stage (one weight
/// decay, `1e-4`, to keep the work bounded), top-1 on `test`.
pub fn probe_layers(
    backbone: &Backbone,
    train: &Dataset,
    test: &Dataset,
    view: &ViewConfig,
    target_dim: usize,
) -> crate::Result<Vec<LayerResult>> {
    let (Some(ytr), Some(yte)) = (&train.labels, &test.labels) else {
        return Err(crate::Error::Config(
            "layer probes need labels for train and test".into(),
        ));
    };
    let ftr = stage_features(backbone, train, view, target_dim, 250);
    let fte = stage_features(backbone, test, view, target_dim, 250);
    let names = backbone.stage_names();
    Ok(ftr
        .iter()
        .zip(&fte)
        .enumerate()
        .map(|(s, ((a, g), (b, _)))| {
            let cfg = linear::LinearProbeConfig {
                weight_decays: vec![1e-4],
                ..Default::default()
            };
            let r = linear::fit_predict(a, ytr, b, &cfg);
            LayerResult {
                name: names.get(s).cloned().unwrap_or_else(|| format!("stage{s}")),
                dim: a.dim,
                grid: *g,
                accuracy: accuracy(&r.predictions, yte),
            }
        })
        .collect())
}
