//! AVID + CMA: "Audio-Visual Instance Discrimination with Cross-Modal Agreement" (Morgado,
//! Vasconcelos & Misra, CVPR 2021).
//!
//! **AVID.** Each (image, sound) pair is an instance. One memory bank per modality holds an
//! L2-normalized embedding of every training image and of every training sound, each moved
//! towards the fresh embedding after every step. The loss is cross-modal: an image embedding
//! must pick out its own sound's entry of the audio bank against `negatives` noise entries of
//! that bank, and a sound embedding its image's entry of the visual bank (NCE, as NPID).
//!
//! **CMA.** From `cma_start` (a fraction of the run) and every `refresh_every` epochs after,
//! each instance gets a positive set: the `positives` other instances whose bank entries
//! agree with it in both modalities (`consensus`: the highest min(visual similarity, audio
//! similarity)). A within-modal term then pulls an image towards the visual bank entries of
//! its positive set, and a sound towards their audio entries, against noise entries outside
//! the set (NCE with positive sets). The loss is the mean of the cross-modal instance term and the
//! within-modal positive term, the reference code's weights.
//!
//! The image tower is the backbone that evaluation freezes; the audio tower is a ConvNet over
//! log-mel windows (see [`crate::nn::audio_visual`]).
//!
//! Length: about 580 lines; AVID's two banks, CMA's positive sets (chosen, saved and restored
//! for exact resume) and the held-out metrics are one method.

use crate::config::RunConfig;
use crate::data::Dataset;
use crate::data::loader::{HostBatch, ViewSpec, mix_seed};
use crate::error::{Error, Result};
use crate::features::mel::Spectrogram;
use crate::losses::nce_with_positive_sets;
use crate::memory::bank::estimate_log_z;
use crate::memory::bank::{MemoryBank, save_scalar, take_scalar};
use crate::methods::audiovisual::avc::{
    auc_metrics, embed_pairs, paired_sounds, recall_at_k, save_localization, sounds_of,
};
use crate::methods::pretext_view;
use crate::methods::{Method, MethodInfo, StepOutput, metrics_or_warn, prepared};
use crate::nn::Backbone;
use crate::nn::audio_visual::{AudioVisualNet, sound_windows};
use crate::train::checkpoint::{self, HostParam};
use crate::train::optim::Optimizer;
use crate::train::step::update;
use burn::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Registry entry.
pub const INFO: MethodInfo = MethodInfo {
    name: "avid_cma",
    paper: "Morgado, Vasconcelos & Misra 2021, Audio-Visual Instance Discrimination with Cross-Modal Agreement",
    summary: "cross-modal instance discrimination with a memory bank per modality, then positives whose audio and visual neighbourhoods agree",
    settings: crate::methods::complete_settings::<AvidCmaConfig>,
    trained_readout: crate::methods::global_readout,
    build,
};

/// Which bank similarities choose the CMA positive sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Agreement {
    /// Similar in both modalities: top-k of min(visual, audio) similarity (the paper's CMA).
    Consensus,
    /// Similar in either: top-k of max(visual, audio).
    Union,
    /// Visual neighbours only.
    Visual,
    /// Audio neighbours only.
    Audio,
}

/// AVID + CMA settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AvidCmaConfig {
    /// Width of the shared embedding space (and of both banks).
    pub embed_dim: usize,
    /// Spectrogram frames per sound window.
    pub frames: usize,
    /// Width multiplier of the audio ConvNet.
    pub audio_width: f32,
    /// Noise entries drawn from a bank per step (shared by the batch; at most the training
    /// set size - 1).
    pub negatives: usize,
    /// Softmax temperature of the similarities.
    pub temperature: f32,
    /// Weight of the old bank entry: `v <- normalize(mu v + (1 - mu) f)`.
    pub bank_momentum: f32,
    /// Size of each CMA positive set.
    pub positives: usize,
    /// When CMA starts, as a fraction of the run's epochs (1 or more: AVID alone).
    pub cma_start: f32,
    /// Epochs between recomputations of the positive sets.
    pub refresh_every: usize,
    /// How the two modalities' neighbourhoods combine.
    pub agreement: Agreement,
}

impl crate::methods::Settings for AvidCmaConfig {
    fn validate(&self, _run: &RunConfig) -> Result<()> {
        AvidCmaConfig::validate(self)
    }
}

impl Default for AvidCmaConfig {
    fn default() -> Self {
        AvidCmaConfig {
            embed_dim: 128,
            frames: 96,
            audio_width: 0.5,
            negatives: 1024,
            temperature: 0.07,
            bank_momentum: 0.5,
            positives: 5,
            cma_start: 0.5,
            refresh_every: 2,
            agreement: Agreement::Consensus,
        }
    }
}

impl AvidCmaConfig {
    /// Checks the values, naming the bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::Config(format!("avid_cma.{what}")));
        if self.embed_dim == 0 || self.frames == 0 || self.negatives == 0 {
            return bad("embed_dim, frames and negatives must be positive");
        }
        if self.audio_width <= 0.0 || self.temperature <= 0.0 || !self.cma_start.is_finite() {
            return bad("audio_width and temperature must be positive, cma_start finite");
        }
        if !(0.0..1.0).contains(&self.bank_momentum) {
            return bad(&format!(
                "bank_momentum ({}) must be in [0, 1)",
                self.bank_momentum
            ));
        }
        if self.positives == 0 || self.refresh_every == 0 {
            return bad("positives and refresh_every must be at least 1");
        }
        Ok(())
    }
}

/// The CMA positive sets: for every entry `i` of the banks, the `k` other entries with the
/// highest agreement score under `agreement`, best first. Similarities are dot products of
/// the (unit) bank rows, computed in blocks on `device`.
pub fn agreement_positives(
    visual: &MemoryBank,
    audio: &MemoryBank,
    k: usize,
    agreement: Agreement,
    device: &Device,
) -> Vec<Vec<usize>> {
    let n = visual.len();
    let all: Vec<usize> = (0..n).collect();
    let (v_all, a_all) = (
        visual.gather(&all, device).transpose(),
        audio.gather(&all, device).transpose(),
    );
    let mut out = Vec::with_capacity(n);
    for start in (0..n).step_by(256) {
        let rows: Vec<usize> = (start..(start + 256).min(n)).collect();
        let sim = |bank: &MemoryBank, t: &Tensor<2>| -> Vec<f32> {
            bank.gather(&rows, device)
                .matmul(t.clone())
                .into_data()
                .try_to_vec::<f32>()
                .expect("f32 similarities")
        };
        let (sv, sa) = (sim(visual, &v_all), sim(audio, &a_all));
        for (r, &i) in rows.iter().enumerate() {
            let score = |j: usize| {
                let (v, a) = (sv[r * n + j], sa[r * n + j]);
                match agreement {
                    Agreement::Consensus => v.min(a),
                    Agreement::Union => v.max(a),
                    Agreement::Visual => v,
                    Agreement::Audio => a,
                }
            };
            let mut others: Vec<usize> = (0..n).filter(|&j| j != i).collect();
            others.sort_by(|&x, &y| score(y).total_cmp(&score(x)).then(x.cmp(&y)));
            others.truncate(k);
            out.push(others);
        }
    }
    out
}

/// The positive sets of every training instance, when they were chosen, and how often a
/// positive shares its instance's label (a diagnostic, when the data has labels).
struct PositiveSets {
    epoch: usize,
    sets: Vec<Vec<usize>>,
    same_label: Option<f64>,
}

impl PositiveSets {
    /// Saves the sets as `cma_positives` (every set's indices, in order),
    /// `cma_positive_counts` (the size of each set), `cma_positives_epoch` and, with labels,
    /// `cma_positives_same_label`.
    fn save_into(&self, t: &mut BTreeMap<String, HostParam>) {
        let flat: Vec<f32> = self.sets.iter().flatten().map(|&j| j as f32).collect();
        let counts: Vec<f32> = self.sets.iter().map(|s| s.len() as f32).collect();
        t.insert(
            "cma_positives".into(),
            HostParam {
                shape: vec![flat.len()],
                data: flat,
            },
        );
        t.insert(
            "cma_positive_counts".into(),
            HostParam {
                shape: vec![counts.len()],
                data: counts,
            },
        );
        save_scalar(t, "cma_positives_epoch", Some(self.epoch as f64));
        save_scalar(t, "cma_positives_same_label", self.same_label);
    }

    /// Takes the sets saved by [`PositiveSets::save_into`] out of `t` (`None` when the
    /// checkpoint has none: CMA had not started).
    fn take_from(t: &mut HashMap<String, HostParam>) -> Option<PositiveSets> {
        let flat = t.remove("cma_positives")?;
        let counts = t.remove("cma_positive_counts")?;
        let epoch = take_scalar(t, "cma_positives_epoch")? as usize;
        let mut rest = flat.data.iter().map(|&j| j as usize);
        let sets = counts
            .data
            .iter()
            .map(|&c| rest.by_ref().take(c as usize).collect())
            .collect();
        Some(PositiveSets {
            epoch,
            sets,
            same_label: take_scalar(t, "cma_positives_same_label"),
        })
    }
}

/// The AVID + CMA method.
pub struct AvidCma {
    net: AudioVisualNet,
    cfg: AvidCmaConfig,
    view: crate::augment::ViewConfig,
    sounds: Option<Arc<Vec<Spectrogram>>>,
    labels: Option<Vec<u32>>,
    visual_bank: MemoryBank,
    audio_bank: MemoryBank,
    /// log Z of the cross-modal NCE, fixed after the first batch.
    log_z: Option<f64>,
    /// log Z of the within-modal NCE, fixed after the first batch with CMA.
    log_z_within: Option<f64>,
    /// The CMA positive sets, once chosen.
    positives: Option<PositiveSets>,
    /// First epoch with the CMA term (`usize::MAX`: never).
    cma_epoch: usize,
    seed: u64,
    device: Device,
}

fn build(run: &RunConfig, in_channels: usize, device: &Device) -> Result<Box<dyn Method>> {
    let cfg: AvidCmaConfig = crate::methods::settings(run)?;
    let cma_epoch = if cfg.cma_start >= 1.0 {
        usize::MAX
    } else {
        (cfg.cma_start.max(0.0) * run.epochs as f32).round() as usize
    };
    let empty = MemoryBank {
        data: Vec::new(),
        dim: cfg.embed_dim,
    };
    Ok(Box::new(AvidCma {
        net: AudioVisualNet::new(
            &run.backbone,
            in_channels,
            cfg.embed_dim,
            cfg.audio_width,
            device,
        ),
        view: pretext_view(run),
        sounds: None,
        labels: None,
        visual_bank: empty.clone(),
        audio_bank: empty,
        log_z: None,
        log_z_within: None,
        positives: None,
        cma_epoch,
        seed: run.seed,
        device: device.clone(),
        cfg,
    }))
}

impl AvidCma {
    /// `[B, m]` 1/0: whether noise entry `noise[c]` counts as noise for row `r` (it is neither
    /// the row's instance `idx[r]` nor in its positive set).
    fn noise_kept(&self, idx: &[usize], noise: &[usize], sets: Option<&[Vec<usize>]>) -> Tensor<2> {
        let kept: Vec<f32> = idx
            .iter()
            .flat_map(|&i| {
                noise.iter().map(move |&j| {
                    let positive = sets.is_some_and(|s| s[i].contains(&j));
                    (j != i && !positive) as u8 as f32
                })
            })
            .collect();
        Tensor::from_data(
            TensorData::new(kept, [idx.len(), noise.len()]),
            &self.device,
        )
    }

    /// Recomputes the positive sets when CMA is on and they are missing or due.
    fn refresh_positives(&mut self, epoch: usize) {
        if epoch < self.cma_epoch {
            return;
        }
        let due = match &self.positives {
            None => true,
            Some(p) => {
                epoch != p.epoch && (epoch - self.cma_epoch).is_multiple_of(self.cfg.refresh_every)
            }
        };
        if !due {
            return;
        }
        let sets = agreement_positives(
            &self.visual_bank,
            &self.audio_bank,
            self.cfg.positives,
            self.cfg.agreement,
            &self.device,
        );
        let same_label = self.labels.as_ref().map(|l| {
            let (hit, all) = sets
                .iter()
                .enumerate()
                .fold((0usize, 0usize), |(h, a), (i, s)| {
                    (h + s.iter().filter(|&&j| l[j] == l[i]).count(), a + s.len())
                });
            hit as f64 / all.max(1) as f64
        });
        self.positives = Some(PositiveSets {
            epoch,
            sets,
            same_label,
        });
    }

    /// Held-out cross-modal retrieval on `data` by cosine similarity of the embeddings:
    /// recall@1 and recall@5 in both directions, with chance levels; retrieval AUCs with their
    /// standard errors ([`auc_metrics`]).
    pub fn held_out(&self, data: &Dataset) -> Result<Vec<(String, f64)>> {
        let n = data.len();
        if n < 2 {
            sounds_of(data)?;
            return Ok(Vec::new());
        }
        let (v, a) = embed_pairs(&self.net.valid(), &self.view, self.cfg.frames, data)?;
        // Sounds are rows, images columns.
        let sim: Vec<f32> = a
            .matmul(v.transpose())
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32 similarities");
        Ok(vec![
            (
                "sound_to_image_recall_at_1".into(),
                recall_at_k(&sim, n, true, 1),
            ),
            (
                "sound_to_image_recall_at_5".into(),
                recall_at_k(&sim, n, true, 5),
            ),
            (
                "image_to_sound_recall_at_1".into(),
                recall_at_k(&sim, n, false, 1),
            ),
            (
                "image_to_sound_recall_at_5".into(),
                recall_at_k(&sim, n, false, 5),
            ),
            ("recall_at_1_chance".into(), 1.0 / n as f64),
            ("recall_at_5_chance".into(), (5.0 / n as f64).min(1.0)),
        ]
        .into_iter()
        .chain(auc_metrics(&sim, n))
        .collect())
    }
}

impl Method for AvidCma {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn views(&self) -> ViewSpec {
        ViewSpec {
            views: vec![self.view.clone()],
        }
    }

    fn prepare(&mut self, data: &Dataset, fresh_run: bool) -> Result<()> {
        let sounds = paired_sounds(data)?;
        if data.len() <= self.cfg.positives + 1 {
            return Err(Error::Config(format!(
                "avid_cma needs more than positives + 1 = {} training pairs, the data has {}",
                self.cfg.positives + 1,
                data.len()
            )));
        }
        let net = &self.net;
        self.visual_bank = MemoryBank::for_data(
            data,
            self.cfg.embed_dim,
            self.seed,
            fresh_run,
            &self.view,
            &self.device,
            |x| net.embed_images(x),
        );
        let all: Vec<usize> = (0..data.len()).collect();
        let frames = self.cfg.frames;
        self.audio_bank = MemoryBank::for_items(
            data.len(),
            self.cfg.embed_dim,
            mix_seed(&[self.seed, 0xA0D1]),
            fresh_run,
            |r| net.embed_sounds(sound_windows(&sounds, &all[r], frames, None, &self.device)),
        );
        self.labels = data.labels.clone();
        self.sounds = Some(sounds);
        Ok(())
    }

    fn train_step(
        &mut self,
        batch: &HostBatch,
        opt: &mut Optimizer,
        lr: f64,
    ) -> Result<StepOutput> {
        // Steps done, this one included: keyed to the batch, so a resume draws the same.
        let step = batch.step + 1;
        let mut terms = Vec::new();
        self.refresh_positives(batch.epoch);
        if let Some(same) = self.positives.as_ref().and_then(|p| p.same_label) {
            terms.push(("cma_positives_same_label".to_string(), same as f32));
        }
        let sounds = prepared(&self.sounds, INFO.name)?.clone();
        let idx = &batch.indices;
        let b = idx.len();
        let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(&[self.seed, 0xA71D, step]));
        let a = self.net.embed_sounds(sound_windows(
            &sounds,
            idx,
            self.cfg.frames,
            Some(&mut rng),
            &self.device,
        ));
        let v = self
            .net
            .embed_images(batch.views[0].to_tensor(&self.device));
        let dev = &self.device;
        let n = self.visual_bank.len();
        // At most n - 1 noise entries: more would only repeat the bank of a small data set.
        let m = self.cfg.negatives.min(n - 1);
        let (t, mu) = (self.cfg.temperature, self.cfg.bank_momentum);
        let row_dot = |x: Tensor<2>, y: Tensor<2>| (x * y).sum_dim(1);
        // Cross-modal instance discrimination: own entry of the other modality's bank, against
        // noise entries (a draw of the row's own instance is not noise for that row).
        let noise = self.visual_bank.sample(m, &mut rng);
        let kept = self.noise_kept(idx, &noise, None);
        let a_own = self.audio_bank.gather(idx, dev);
        let v_own = self.visual_bank.gather(idx, dev);
        let v2a = (
            row_dot(v.clone(), a_own),
            v.clone()
                .matmul(self.audio_bank.gather(&noise, dev).transpose()),
        );
        let a2v = (
            row_dot(a.clone(), v_own),
            a.clone()
                .matmul(self.visual_bank.gather(&noise, dev).transpose()),
        );
        // Z from the first batch's noise scores, as NPID and the reference code.
        let estimate = |x: &Tensor<2>, y: &Tensor<2>| {
            estimate_log_z(Tensor::cat(vec![x.clone(), y.clone()], 0), t, n)
        };
        let log_z = *self.log_z.get_or_insert_with(|| estimate(&v2a.1, &a2v.1));
        let nce = |(pos, neg): (Tensor<2>, Tensor<2>), kept: &Tensor<2>, log_z: f64| {
            nce_with_positive_sets(pos, neg, Some(kept.clone()), t, log_z, n)
        };
        let cross = (nce(v2a, &kept, log_z) + nce(a2v, &kept, log_z)) / 2.0;
        let mut loss = cross.clone();
        terms.push(("cross_modal_instance".into(), cross.clone().into_scalar()));
        if let Some(PositiveSets { sets, .. }) = &self.positives {
            // Within-modal positive-set discrimination; a noise draw of a row's own instance or
            // of one of its positives is not noise for that row.
            let k = self.cfg.positives;
            let pos_idx: Vec<usize> = idx.iter().flat_map(|&i| sets[i].iter().copied()).collect();
            let noise = self.visual_bank.sample(m, &mut rng);
            let kept = self.noise_kept(idx, &noise, Some(sets));
            let within = |x: &Tensor<2>, bank: &MemoryBank| {
                let e = x.dims()[1];
                let pos = x
                    .clone()
                    .reshape([b, 1, e])
                    .repeat_dim(1, k)
                    .mul(bank.gather(&pos_idx, dev).reshape([b, k, e]))
                    .sum_dim(2)
                    .reshape([b, k]);
                (pos, x.clone().matmul(bank.gather(&noise, dev).transpose()))
            };
            let (v2v, a2a) = (within(&v, &self.visual_bank), within(&a, &self.audio_bank));
            // Within-modal similarities have a scale of their own: their own Z.
            let log_z = *self
                .log_z_within
                .get_or_insert_with(|| estimate(&v2v.1, &a2a.1));
            let w = (nce(v2v, &kept, log_z) + nce(a2a, &kept, log_z)) / 2.0;
            terms.push(("within_modal_positives".into(), w.clone().into_scalar()));
            loss = (loss + w) / 2.0;
        }
        let (model, value) = update(self.net.clone(), loss, opt, lr, step, "AVID + CMA loss")?;
        self.net = model;
        self.visual_bank.update_from_all_ranks(idx, v, mu);
        self.audio_bank.update_from_all_ranks(idx, a, mu);
        Ok(StepOutput { loss: value, terms })
    }

    fn pretext_metrics(&self, data: &Dataset, _limit: usize) -> Vec<(String, f64)> {
        metrics_or_warn(self.held_out(data), "cross-modal retrieval scores")
    }

    fn write_previews(&self, data: &Dataset, dir: &Path) -> Result<Vec<PathBuf>> {
        let path = dir.join("localization.png");
        save_localization(
            &self.net.valid(),
            &self.view,
            self.cfg.frames,
            &path,
            data,
            8,
        )?;
        Ok(vec![path])
    }

    fn backbone(&self) -> Backbone {
        self.net.backbone.clone()
    }

    fn tensors(&self) -> BTreeMap<String, HostParam> {
        let mut t = checkpoint::collect(&self.net);
        self.visual_bank.save_as(&mut t, "visual_bank");
        self.audio_bank.save_as(&mut t, "audio_bank");
        save_scalar(&mut t, "log_z", self.log_z);
        save_scalar(&mut t, "log_z_within", self.log_z_within);
        if let Some(p) = &self.positives {
            p.save_into(&mut t);
        }
        t
    }

    fn load_tensors(&mut self, tensors: &HashMap<String, HostParam>, path: &Path) -> Result<()> {
        let mut rest = tensors.clone();
        self.log_z = take_scalar(&mut rest, "log_z");
        self.log_z_within = take_scalar(&mut rest, "log_z_within");
        self.visual_bank.take_from(&mut rest, "visual_bank", path)?;
        self.audio_bank.take_from(&mut rest, "audio_bank", path)?;
        // The positive sets in use (chosen at their epoch from the banks of that time).
        self.positives = PositiveSets::take_from(&mut rest);
        self.net = checkpoint::apply(self.net.clone(), &rest, path)?;
        Ok(())
    }
}
