//! Evaluation of frozen features: extract them once, then fit simple models on them.
//!
//! * [`knn`]: weighted k-NN on cosine similarity (Wu et al. 2018, as in solo-learn).
//! * [`linear`]: a linear probe (multinomial logistic regression on standardized features).

pub mod ap;
pub mod finetune;
pub mod knn;
pub mod layers;
pub mod linear;
pub mod lowshot;
pub mod neighbors;
pub mod svm;

use crate::augment::{Image, ViewConfig};
use crate::data::Dataset;
use crate::nn::Backbone;
use burn::module::Module;

/// Features of a data set: `n` rows of `dim` values.
#[derive(Clone, Debug, PartialEq)]
pub struct Features {
    /// Row-major values, `n * dim`.
    pub data: Vec<f32>,
    /// Number of rows.
    pub n: usize,
    /// Dimension of each row.
    pub dim: usize,
}

impl Features {
    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

/// How an image's feature vector is read from the backbone.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Readout {
    /// The backbone's features (the stages and pooling the run's `[features]` say) on the
    /// whole view.
    Global(crate::nn::FeaturesConfig),
    /// The mean of the backbone's outputs on an overlapping grid of patches (CPC, whose
    /// encoder only ever sees patches).
    PatchGrid(crate::pretext::tiles::PatchGrid),
    /// No network: the view's normalized pixels, flattened (the raw-pixel baseline every
    /// results table carries).
    Pixels,
}

/// Runs the frozen `backbone` (inference mode: BN uses running statistics) over every image of
/// `data`, preprocessed with `view` (normalization and resize only), in batches.
pub fn extract(backbone: &Backbone, data: &Dataset, view: &ViewConfig, batch: usize) -> Features {
    extract_with(
        backbone,
        data,
        view,
        Readout::Global(Default::default()),
        batch,
    )
}

/// Images `range` of `data` made by `view` (use [`ViewConfig::eval_only`] for evaluation:
/// resize and normalization only), as one `[n, c, h, w]` host batch.
pub fn plain_batch(
    data: &Dataset,
    view: &ViewConfig,
    range: std::ops::Range<usize>,
) -> crate::data::loader::HostTensor {
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
    let mut shape = [range.len(), 0, 0, 0];
    let mut data_out = Vec::new();
    for i in range {
        let img = Image::from_u8(data.image(i), data.channels, data.height, data.width);
        let v = view.make(&img, &mut rng);
        shape[1..].copy_from_slice(&[v.channels, v.height, v.width]);
        data_out.extend(v.data);
    }
    crate::data::loader::HostTensor {
        data: data_out,
        shape,
    }
}

/// The features of the images `host` (`[n, c, h, w]`, already made) from `backbone`, read
/// as `readout`: `[n, dim]`.
pub fn read_features(
    backbone: &Backbone,
    host: &crate::data::loader::HostTensor,
    readout: Readout,
    device: &burn::tensor::Device,
) -> burn::tensor::Tensor<2> {
    let n = host.shape[0];
    match readout {
        Readout::Global(features) => backbone.features(host.to_tensor(device), &features),
        Readout::Pixels => {
            let d = host.data.len() / n.max(1);
            burn::tensor::Tensor::from_data(
                burn::tensor::TensorData::new(host.data.clone(), [n, d]),
                device,
            )
        }
        Readout::PatchGrid(grid) => {
            let g = grid.side(host.shape[2].min(host.shape[3]));
            let f = backbone.forward(grid.cut(host).to_tensor(device));
            let d = f.dims()[1];
            f.reshape([n, g * g, d]).mean_dim(1).reshape([n, d])
        }
    }
}

/// [`extract`] with a choice of [`Readout`].
pub fn extract_with(
    backbone: &Backbone,
    data: &Dataset,
    view: &ViewConfig,
    readout: Readout,
    batch: usize,
) -> Features {
    let plain = backbone.valid();
    let device = crate::device::of(&plain);
    let view = view.eval_only();
    let mut out = Vec::new();
    let mut dim = 0;
    for start in (0..data.len()).step_by(batch.max(1)) {
        let end = (start + batch).min(data.len());
        let host = plain_batch(data, &view, start..end);
        let f = read_features(&plain, &host, readout, &device);
        dim = f.dims()[1];
        out.extend(
            f.into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .expect("f32 features"),
        );
    }
    Features {
        n: data.len(),
        dim,
        data: out,
    }
}

/// Frozen features of a labeled train and test split, with their labels: what every
/// evaluation of a backbone starts from.
pub struct LabeledFeatures {
    /// Features of the train split (what k-NN searches and the probe is fit on).
    pub train: Features,
    /// Labels of the train split.
    pub train_labels: Vec<u32>,
    /// Features of the test split (what is scored).
    pub test: Features,
    /// Labels of the test split.
    pub test_labels: Vec<u32>,
}

/// Extracts [`LabeledFeatures`] of `splits` with `backbone`; errors when the data has no test
/// split or no labels.
pub fn labeled_features(
    backbone: &Backbone,
    splits: &crate::data::Splits,
    view: &ViewConfig,
    readout: Readout,
) -> crate::Result<LabeledFeatures> {
    let test = splits
        .test
        .as_ref()
        .ok_or_else(|| crate::Error::Config("evaluation needs a test split to score on".into()))?;
    let (Some(ytr), Some(yte)) = (&splits.train.labels, &test.labels) else {
        return Err(crate::Error::Config(
            "evaluation needs labels for the train and test splits".into(),
        ));
    };
    Ok(LabeledFeatures {
        train: extract_with(backbone, &splits.train, view, readout, 500),
        train_labels: ytr.clone(),
        test: extract_with(backbone, test, view, readout, 500),
        test_labels: yte.clone(),
    })
}

/// Mean and sample standard deviation (n - 1) of `values` (sd 0 for fewer than two).
pub fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len();
    let mean = values.iter().sum::<f64>() / n.max(1) as f64;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n.max(2) - 1) as f64;
    (mean, var.sqrt())
}

/// Top-1 accuracy of `predicted` against `labels`, in percent.
pub fn accuracy(predicted: &[u32], labels: &[u32]) -> f64 {
    let hits = predicted.iter().zip(labels).filter(|(p, l)| p == l).count();
    100.0 * hits as f64 / labels.len().max(1) as f64
}

fn write_npy<T: npyz::AutoSerialize + Copy>(
    path: &std::path::Path,
    data: &[T],
    shape: &[u64],
) -> crate::Result<()> {
    let mut buf = Vec::new();
    {
        use npyz::WriterBuilder;
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(shape)
            .writer(&mut buf)
            .begin_nd()
            .map_err(|e| crate::Error::io(path, e))?;
        w.extend(data.iter().copied())
            .map_err(|e| crate::Error::io(path, e))?;
        w.finish().map_err(|e| crate::Error::io(path, e))?;
    }
    crate::train::checkpoint::write_atomic(path, &buf)
}

/// Writes a `float32` array of `shape` to a NumPy `.npy` file (atomically).
pub fn write_npy_f32(path: &std::path::Path, data: &[f32], shape: &[u64]) -> crate::Result<()> {
    write_npy(path, data, shape)
}

/// Writes a `uint8` array of `shape` to a NumPy `.npy` file (atomically).
pub fn write_npy_u8(path: &std::path::Path, data: &[u8], shape: &[u64]) -> crate::Result<()> {
    write_npy(path, data, shape)
}

/// Writes a 1-D `int64` array to a NumPy `.npy` file (atomically).
pub fn write_npy_i64(path: &std::path::Path, data: &[i64]) -> crate::Result<()> {
    write_npy(path, data, &[data.len() as u64])
}

/// AdaBN ("Revisiting Batch Normalization For Practical Domain Adaptation", Li et al. 2017):
/// the backbone with its BatchNorm running statistics re-estimated on `data` (seen through
/// `view`, in batches of `batch`); no weight changes. The statistics are module state that
/// clones share, so `backbone` and its clones see the new statistics too. For features pretrained on another
/// domain (video frames evaluated on Fashion-MNIST), whose statistics the frozen network would
/// otherwise carry over.
pub fn adapt_batchnorm(
    backbone: Backbone,
    data: &Dataset,
    view: &ViewConfig,
    batch: usize,
) -> Backbone {
    let base = crate::device::of(&backbone);
    let train = crate::device::training(&base);
    let net = backbone.fork(&train);
    let batch = batch.max(2);
    // BatchNorm's running averages keep 10 % of each batch: 60 batches leave < 0.2 % of the
    // old statistics.
    let batches = data.len().div_ceil(batch).max(1);
    let rounds = 60usize.div_ceil(batches);
    for _ in 0..rounds {
        for start in (0..data.len()).step_by(batch) {
            let range = start..(start + batch).min(data.len());
            if range.len() < 2 {
                continue;
            }
            let x = plain_batch(data, &view.eval_only(), range).to_tensor(&train);
            drop(net.forward(x));
        }
    }
    net.valid()
}

/// Top-1 accuracy, in `[0, 1]`, of `scores` (`[B, K]`, or `[B, K, h, w]` for one label per
/// output pixel) against `labels` in the order of the scores with dimension 1 removed: the
/// batch accuracy a training step logs.
pub fn batch_accuracy<const D: usize>(scores: &burn::prelude::Tensor<D>, labels: &[u32]) -> f32 {
    let pred: Vec<u32> = scores
        .clone()
        .argmax(1)
        .into_data()
        .convert::<u32>()
        .try_to_vec::<u32>()
        .expect("argmax indices");
    (accuracy(&pred, labels) / 100.0) as f32
}
