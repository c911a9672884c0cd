//! The default data set compiled into the binary: a real subset of Fashion-MNIST
//! (the first 10,000 train images and all 10,000 test images; MIT licence, `assets/fashion-mnist/COPYRIGHT`).

use super::idx::{FASHION_CLASSES, dataset_from, parse};
use super::{Splits, maybe_gunzip};
use crate::error::Result;
use std::path::Path;

const TRAIN_IMAGES: &[u8] = include_bytes!("../../assets/fashion-mnist/train-images-idx3-ubyte.gz");
const TRAIN_LABELS: &[u8] = include_bytes!("../../assets/fashion-mnist/train-labels-idx1-ubyte.gz");
const TEST_IMAGES: &[u8] = include_bytes!("../../assets/fashion-mnist/t10k-images-idx3-ubyte.gz");
const TEST_LABELS: &[u8] = include_bytes!("../../assets/fashion-mnist/t10k-labels-idx1-ubyte.gz");

/// The embedded Fashion-MNIST subset: 10,000 train and 10,000 test images, 28x28 grey, 10 classes.
pub fn fashion_mnist() -> Result<Splits> {
    let load = |name: &str, img: &[u8], lab: &[u8]| {
        let ip = Path::new("<embedded>").join(format!("{name}-images-idx3-ubyte.gz"));
        let lp = Path::new("<embedded>").join(format!("{name}-labels-idx1-ubyte.gz"));
        let images = parse(&ip, &maybe_gunzip(&ip, img.to_vec())?)?;
        let labels = parse(&lp, &maybe_gunzip(&lp, lab.to_vec())?)?;
        let mut d = dataset_from(images, &ip, Some((labels, &lp)))?;
        d.class_names = FASHION_CLASSES.iter().map(|s| s.to_string()).collect();
        Ok::<_, crate::error::Error>(d)
    };
    Ok(Splits {
        train: load("train", TRAIN_IMAGES, TRAIN_LABELS)?,
        test: Some(load("t10k", TEST_IMAGES, TEST_LABELS)?),
    })
}
