//! Generative methods: the representation must be enough to rebuild (autoencoder, VAE) or to
//! tell apart from generated pairs (BiGAN) the image.

pub mod autoencoder;
pub mod bigan;
