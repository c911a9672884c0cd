//! Data sets: images held in memory as `u8` in CHW order, with optional labels.
//!
//! A data source is named on the command line as `KIND:PATH` (see [`DataSource`]); the
//! embedded Fashion-MNIST subset is used when none is given.

pub mod audio;
pub mod audiovisual;
pub mod cifar;
pub mod embedded;
pub mod folder;
pub mod idx;
pub mod loader;
pub mod video;

use crate::error::{Error, Result};
use std::path::PathBuf;

/// A set of equally sized images in memory, `u8` pixels in CHW order, with optional labels.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Pixels of all images, `len * channels * height * width` bytes, each image in CHW order.
    pub pixels: Vec<u8>,
    /// Class label of each image, when known.
    pub labels: Option<Vec<u32>>,
    /// Names of the classes, indexed by label, when known.
    pub class_names: Vec<String>,
    /// Channels per image (1 for grey, 3 for RGB).
    pub channels: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
    /// For video: the frame range of each clip, in order (frames are images in clip order).
    /// Empty for still images, and after [`Dataset::subset`] or [`Dataset::random_crops`].
    pub clips: Vec<std::ops::Range<usize>>,
    /// For image + sound pairs (and video frames with their sound): the log-mel spectrogram
    /// of each image's sound (shared by clones); `None` for images alone.
    pub sounds: Option<std::sync::Arc<Vec<crate::features::mel::Spectrogram>>>,
    /// For images read from files (`folder:` sources): the file of each image, in order;
    /// empty for other sources.
    pub paths: Vec<PathBuf>,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.pixels.len() / self.image_size().max(1)
    }

    /// Whether the data set holds no image.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes per image.
    pub fn image_size(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The pixels of image `i`, CHW order.
    pub fn image(&self, i: usize) -> &[u8] {
        let s = self.image_size();
        &self.pixels[i * s..(i + 1) * s]
    }

    /// Number of classes (one more than the largest label), 0 when unlabeled.
    pub fn num_classes(&self) -> usize {
        self.labels
            .as_ref()
            .map_or(0, |l| l.iter().copied().max().map_or(0, |m| m as usize + 1))
    }

    /// A new data set with the images at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let mut pixels = Vec::with_capacity(indices.len() * self.image_size());
        for &i in indices {
            pixels.extend_from_slice(self.image(i));
        }
        Dataset {
            pixels,
            labels: self
                .labels
                .as_ref()
                .map(|l| indices.iter().map(|&i| l[i]).collect()),
            class_names: self.class_names.clone(),
            channels: self.channels,
            height: self.height,
            width: self.width,
            clips: Vec::new(),
            sounds: self
                .sounds
                .as_ref()
                .map(|s| std::sync::Arc::new(indices.iter().map(|&i| s[i].clone()).collect())),
            paths: if self.paths.is_empty() {
                Vec::new()
            } else {
                indices.iter().map(|&i| self.paths[i].clone()).collect()
            },
        }
    }

    /// `n` square crops of side `side` at random places of random images (seeded), with the
    /// label of the image they come from: many small training images out of a few large
    /// photographs. Errors when the images are smaller than `side`.
    pub fn random_crops(&self, n: usize, side: usize, seed: u64) -> Result<Dataset> {
        use rand::{Rng, SeedableRng};
        if self.is_empty() || side == 0 || side > self.height.min(self.width) {
            return Err(Error::Config(format!(
                "cannot cut {side} px crops from {} images of {}x{} px",
                self.len(),
                self.height,
                self.width
            )));
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let (c, h, w) = (self.channels, self.height, self.width);
        let mut pixels = Vec::with_capacity(n * c * side * side);
        let mut labels = Vec::with_capacity(n);
        for _ in 0..n {
            let i = rng.random_range(0..self.len());
            let (y0, x0) = (
                rng.random_range(0..=h - side),
                rng.random_range(0..=w - side),
            );
            let img = self.image(i);
            for ch in 0..c {
                for y in y0..y0 + side {
                    let row = ch * h * w + y * w + x0;
                    pixels.extend_from_slice(&img[row..row + side]);
                }
            }
            labels.push(self.labels.as_ref().map_or(i as u32, |l| l[i]));
        }
        Ok(Dataset {
            pixels,
            labels: Some(labels),
            class_names: self.class_names.clone(),
            channels: c,
            height: side,
            width: side,
            clips: Vec::new(),
            sounds: None,
            paths: Vec::new(),
        })
    }

    /// For video: the index of the clip that frame `i` belongs to.
    pub fn clip_of(&self, i: usize) -> Option<usize> {
        self.clips.iter().position(|r| r.contains(&i))
    }

    /// The same labels and geometry with no pixels (for data sets derived pixel by pixel).
    pub fn clone_without_pixels(&self) -> Dataset {
        Dataset {
            pixels: Vec::new(),
            labels: self.labels.clone(),
            class_names: self.class_names.clone(),
            channels: self.channels,
            height: self.height,
            width: self.width,
            clips: self.clips.clone(),
            sounds: self.sounds.clone(),
            paths: self.paths.clone(),
        }
    }

    /// The first `n` images (all of them if there are fewer); clips are cut at `n` frames.
    pub fn take(&self, n: usize) -> Dataset {
        let n = n.min(self.len());
        let idx: Vec<usize> = (0..n).collect();
        let mut out = self.subset(&idx);
        out.clips = self
            .clips
            .iter()
            .filter(|r| r.start < n)
            .map(|r| r.start..r.end.min(n))
            .collect();
        out
    }
}

/// A train split and an optional held-out test split.
#[derive(Clone, Debug)]
pub struct Splits {
    /// Images to pretrain on (and to fit evaluation models on).
    pub train: Dataset,
    /// Held-out images to score evaluation on.
    pub test: Option<Dataset>,
}

/// The seed of the validation split ([`Splits::validation`]): fixed, so every run, tool and
/// document means the same images.
pub const VALIDATION_SEED: u64 = 0x7A11_DA7E;

/// The share of each class of the train split that [`Splits::validation`] holds out.
pub const VALIDATION_FRACTION: f64 = 0.2;

impl Splits {
    /// The validation protocol: a fixed fifth of each class of the train split (seeded by
    /// [`VALIDATION_SEED`]; of the whole split when unlabeled) becomes the split that is
    /// scored, the other four fifths the train split; the test split is dropped unread.
    /// Every choice of recipe, readout or stopping point is made on this split, so that the
    /// test split is only ever used for the figure that is reported. Both parts keep the
    /// train split's order. Errors for video frames (a clip cannot be cut across parts) and
    /// for fewer than 5 images.
    pub fn validation(&self) -> Result<Splits> {
        use rand::SeedableRng;
        use rand::seq::SliceRandom;
        let train = &self.train;
        if !train.clips.is_empty() {
            return Err(Error::Config(
                "the validation split is for image data sets: video frames belong to clips \
                 that it would cut in two (score video on its test split)"
                    .into(),
            ));
        }
        if train.len() < 5 {
            return Err(Error::Config(format!(
                "the validation split needs at least 5 training images, the data has {}",
                train.len()
            )));
        }
        let mut groups: std::collections::BTreeMap<u32, Vec<usize>> = Default::default();
        for i in 0..train.len() {
            let class = train.labels.as_ref().map_or(0, |l| l[i]);
            groups.entry(class).or_default().push(i);
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(VALIDATION_SEED);
        let mut held = vec![false; train.len()];
        for members in groups.values_mut() {
            members.shuffle(&mut rng);
            let n = (members.len() as f64 * VALIDATION_FRACTION).round() as usize;
            for &i in &members[..n] {
                held[i] = true;
            }
        }
        let (val, fit): (Vec<usize>, Vec<usize>) = (0..train.len()).partition(|&i| held[i]);
        Ok(Splits {
            train: train.subset(&fit),
            test: Some(train.subset(&val)),
        })
    }
}

/// Where data comes from, as written on the command line: `KIND:PATH`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DataSource {
    /// The Fashion-MNIST subset compiled into the binary (10,000 train + 10,000 test images).
    Embedded,
    /// A folder with MNIST-style IDX files (gzipped or not): `idx:PATH`.
    Idx(PathBuf),
    /// A folder with CIFAR-10 binary batches: `cifar10:PATH`.
    Cifar10(PathBuf),
    /// A folder with CIFAR-100 binary files (`train.bin`, `test.bin`): `cifar100:PATH`.
    Cifar100(PathBuf),
    /// A folder of images, one sub-folder per class (or none, unlabeled): `folder:PATH`.
    Folder(PathBuf),
    /// Video clips (a file, a folder of frame images, or a folder of both): `video:PATH`.
    Video(PathBuf),
    /// Images with the sound of the same name beside them, in category sub-folders, or video
    /// files with a sound track (each frame with the sound around it): `av:PATH`.
    AudioVisual(PathBuf),
}

impl std::str::FromStr for DataSource {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if s == "embedded" {
            return Ok(DataSource::Embedded);
        }
        let (kind, path) = s.split_once(':').ok_or_else(|| {
            Error::Config(format!(
                "data source '{s}' should be KIND:PATH with KIND one of idx, cifar10, cifar100, folder, video, av (or 'embedded')"
            ))
        })?;
        let path = PathBuf::from(path);
        match kind {
            "idx" => Ok(DataSource::Idx(path)),
            "cifar10" => Ok(DataSource::Cifar10(path)),
            "cifar100" => Ok(DataSource::Cifar100(path)),
            "folder" => Ok(DataSource::Folder(path)),
            "video" => Ok(DataSource::Video(path)),
            "av" => Ok(DataSource::AudioVisual(path)),
            _ => Err(Error::Config(format!(
                "unknown data kind '{kind}' in '{s}': use idx, cifar10, cifar100, folder, video or av"
            ))),
        }
    }
}

impl TryFrom<String> for DataSource {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<DataSource> for String {
    fn from(d: DataSource) -> String {
        d.to_string()
    }
}

impl std::fmt::Display for DataSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataSource::Embedded => write!(f, "embedded"),
            DataSource::Idx(p) => write!(f, "idx:{}", p.display()),
            DataSource::Cifar10(p) => write!(f, "cifar10:{}", p.display()),
            DataSource::Cifar100(p) => write!(f, "cifar100:{}", p.display()),
            DataSource::Folder(p) => write!(f, "folder:{}", p.display()),
            DataSource::Video(p) => write!(f, "video:{}", p.display()),
            DataSource::AudioVisual(p) => write!(f, "av:{}", p.display()),
        }
    }
}

impl DataSource {
    /// Reads the source into memory. A folder source with `train/` and `test/` sub-folders
    /// gives both splits; otherwise the whole folder is the train split. Unreadable images in
    /// a folder are skipped with a warning (see [`DataSource::load_strict`]).
    pub fn load(&self) -> Result<Splits> {
        self.load_strict(false)
    }

    /// [`DataSource::load`], failing on the first unreadable image when `strict`.
    pub fn load_strict(&self, strict: bool) -> Result<Splits> {
        self.load_with(&LoadOptions {
            strict,
            ..LoadOptions::default()
        })
    }

    /// Reads the source as `opts` say (folder image side, video sampling, strictness).
    pub fn load_with(&self, opts: &LoadOptions) -> Result<Splits> {
        let splits = self.load_all(opts)?;
        if opts.validation {
            splits.validation()
        } else {
            Ok(splits)
        }
    }

    fn load_all(&self, opts: &LoadOptions) -> Result<Splits> {
        match self {
            DataSource::Embedded => embedded::fashion_mnist(),
            DataSource::Idx(p) => idx::load_dir(p),
            DataSource::Cifar10(p) => cifar::load_cifar10_dir(p),
            DataSource::Cifar100(p) => cifar::load_cifar100_dir(p),
            DataSource::Folder(p) => folder::load_splits(p, opts.folder_side, opts.strict),
            DataSource::Video(p) => video::load_splits(p, &opts.video),
            DataSource::AudioVisual(p) => audiovisual::load_splits(
                p,
                opts.folder_side,
                &opts.mel,
                &opts.video,
                opts.holdout_every,
            ),
        }
    }
}

/// How a [`DataSource`] is read.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Fail on the first unreadable image of a folder instead of skipping it.
    pub strict: bool,
    /// Side that folder images are resized to.
    pub folder_side: usize,
    /// How video clips are sampled.
    pub video: video::VideoConfig,
    /// How sounds become spectrograms.
    pub mel: crate::features::mel::MelConfig,
    /// Image + sound pairs: every this many of a category is held out.
    pub holdout_every: usize,
    /// Score on the validation split instead of the test split ([`Splits::validation`]).
    pub validation: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            strict: false,
            folder_side: folder::DEFAULT_SIDE,
            video: video::VideoConfig::default(),
            mel: crate::features::mel::MelConfig::default(),
            holdout_every: 5,
            validation: false,
        }
    }
}

/// Reads a whole file, naming it in the error.
pub(crate) fn read_file(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// Inflates `bytes` if they start with the gzip magic number, naming `path` in errors.
pub fn maybe_gunzip(path: &std::path::Path, bytes: Vec<u8>) -> Result<Vec<u8>> {
    if bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b {
        use std::io::Read;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .map_err(|e| Error::format(path, format!("corrupt gzip stream: {e}")))?;
        Ok(out)
    } else {
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` one-pixel images whose pixel is their index mod 256, labelled `i % classes`.
    fn numbered(n: usize, classes: u32) -> Dataset {
        Dataset {
            pixels: (0..n).map(|i| (i % 256) as u8).collect(),
            labels: Some((0..n as u32).map(|i| i % classes).collect()),
            class_names: Vec::new(),
            channels: 1,
            height: 1,
            width: 1,
            clips: Vec::new(),
            sounds: None,
            paths: Vec::new(),
        }
    }

    #[test]
    fn the_validation_split_is_a_fixed_balanced_fifth_of_train_and_drops_test() {
        let splits = Splits {
            train: numbered(1000, 10),
            test: Some(numbered(50, 10)),
        };
        let v = splits.validation().unwrap();
        let (fit, val) = (&v.train, v.test.as_ref().unwrap());
        assert_eq!((fit.len(), val.len()), (800, 200));
        // 20 of each class's 100 images are held out.
        let val_labels = val.labels.as_ref().unwrap();
        for c in 0..10 {
            assert_eq!(val_labels.iter().filter(|&&l| l == c).count(), 20);
        }
        // Disjoint and complete: the pixel (index mod 256) and label identify the image, so
        // count (pixel, label) pairs over both parts against the whole.
        let key = |d: &Dataset, i: usize| (d.image(i)[0], d.labels.as_ref().unwrap()[i]);
        let mut seen: Vec<(u8, u32)> = (0..fit.len()).map(|i| key(fit, i)).collect();
        seen.extend((0..val.len()).map(|i| key(val, i)));
        let mut whole: Vec<(u8, u32)> = (0..1000).map(|i| key(&splits.train, i)).collect();
        seen.sort_unstable();
        whole.sort_unstable();
        assert_eq!(seen, whole);
        // Fixed: the same images every time, and not simply the first ones.
        let again = splits.validation().unwrap();
        assert_eq!(again.test.unwrap().pixels, val.pixels);
        assert_ne!(val.pixels[..20], splits.train.pixels[..20]);
    }

    #[test]
    fn the_validation_split_refuses_video_and_tiny_data() {
        let mut video = numbered(100, 2);
        video.clips = vec![0..50, 50..100];
        let e = Splits {
            train: video,
            test: None,
        }
        .validation()
        .unwrap_err();
        assert!(e.to_string().contains("video"), "{e}");
        let e = Splits {
            train: numbered(4, 2),
            test: None,
        }
        .validation()
        .unwrap_err();
        assert!(e.to_string().contains("at least 5"), "{e}");
    }
}
