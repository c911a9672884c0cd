//! The two towers of the audio-visual methods (AVC, AVID + CMA): the image backbone with a
//! linear head into a shared embedding space, and a small audio ConvNet over log-mel
//! spectrogram windows with its own head into the same space.

use super::{Backbone, BackboneConfig};
use crate::features::mel::Spectrogram;
use crate::losses::l2_normalize;
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Image and sound encoders that embed into one space.
#[derive(Module, Debug)]
pub struct AudioVisualNet {
    /// The visual representation.
    pub backbone: Backbone,
    /// Image features to the shared space.
    pub vision_head: Linear,
    /// Normalizes the log-mel input (running statistics are saved with the model).
    pub audio_norm: BatchNorm,
    /// The audio ConvNet over spectrogram windows.
    pub audio: Backbone,
    /// Audio features to the shared space.
    pub audio_head: Linear,
}

impl AudioVisualNet {
    /// The backbone of `backbone` for `in_channels`-channel images, an audio ConvNet of the
    /// same kind at width `audio_width`, and heads into `embed_dim` dimensions.
    pub fn new(
        backbone: &BackboneConfig,
        in_channels: usize,
        embed_dim: usize,
        audio_width: f32,
        device: &Device,
    ) -> Self {
        let vision = Backbone::new(backbone, in_channels, device);
        let mut audio_cfg = backbone.clone();
        audio_cfg.width = audio_width;
        let audio = Backbone::new(&audio_cfg, 1, device);
        AudioVisualNet {
            vision_head: LinearConfig::new(vision.feature_dim(), embed_dim).init(device),
            backbone: vision,
            audio_norm: BatchNormConfig::new(1).init(device),
            audio_head: LinearConfig::new(audio.feature_dim(), embed_dim).init(device),
            audio,
        }
    }

    /// L2-normalized image embeddings `[B, E]`.
    pub fn embed_images(&self, x: Tensor<4>) -> Tensor<2> {
        l2_normalize(self.vision_head.forward(self.backbone.forward(x)))
    }

    /// L2-normalized sound embeddings `[B, E]` of spectrogram windows `[B, 1, mels, frames]`.
    pub fn embed_sounds(&self, x: Tensor<4>) -> Tensor<2> {
        l2_normalize(
            self.audio_head
                .forward(self.audio.forward(self.audio_norm.forward(x))),
        )
    }

    /// Where each image's sound comes from: the cosine similarity of the sound embedding
    /// `[B, E]` with the image embedding of every position of the last feature map (the
    /// vision head applied before pooling), `[B, h, w]`.
    pub fn localize(&self, images: Tensor<4>, sounds: Tensor<2>) -> Tensor<3> {
        let map = self
            .backbone
            .forward_stages(images)
            .pop()
            .expect("a backbone has stages");
        let [b, c, h, w] = map.dims();
        let per_place = map.reshape([b, c, h * w]).swap_dims(1, 2);
        let v = self.vision_head.forward(per_place);
        let norm = v.clone().powi_scalar(2).sum_dim(2).sqrt().clamp_min(1e-12);
        let v = v / norm;
        let e = sounds.dims()[1];
        v.matmul(sounds.reshape([b, e, 1])).reshape([b, h, w])
    }
}

/// Spectrogram windows `[which.len(), 1, mels, width]` of the sounds `which`: at a random
/// start within each sound when `rng` is given (training), else from its first frame.
pub fn sound_windows(
    sounds: &[Spectrogram],
    which: &[usize],
    width: usize,
    rng: Option<&mut ChaCha8Rng>,
    device: &Device,
) -> Tensor<4> {
    let mels = sounds[0].n_mels;
    let mut data = Vec::with_capacity(which.len() * mels * width);
    let mut rng = rng;
    for &i in which {
        let s = &sounds[i];
        let start = match rng.as_deref_mut() {
            Some(r) if s.frames > width => r.random_range(0..=s.frames - width),
            _ => 0,
        };
        data.extend(s.window(start, width));
    }
    Tensor::from_data(TensorData::new(data, [which.len(), 1, mels, width]), device)
}
