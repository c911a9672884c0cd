//! Readers of every data format, on good and bad input.

use selfsup::data::{DataSource, cifar, folder, idx};
use std::io::Write;
use std::path::Path;

fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        b.extend(d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn err_text<T: std::fmt::Debug>(r: selfsup::Result<T>) -> String {
    r.expect_err("should fail").to_string()
}

#[test]
fn idx_reads_plain_and_gzipped_folders() {
    let dir = tempfile::tempdir().unwrap();
    let px: Vec<u8> = (0..3 * 4 * 5).map(|i| i as u8).collect();
    std::fs::write(
        dir.path().join("train-images-idx3-ubyte"),
        idx_bytes(&[3, 4, 5], &px),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("train-labels-idx1-ubyte.gz"),
        gz(&idx_bytes(&[3], &[7, 1, 2])),
    )
    .unwrap();
    let s = idx::load_dir(dir.path()).unwrap();
    assert_eq!(
        (
            s.train.len(),
            s.train.height,
            s.train.width,
            s.train.channels
        ),
        (3, 4, 5, 1)
    );
    assert_eq!(s.train.labels, Some(vec![7, 1, 2]));
    assert_eq!(s.train.image(1)[0], 20);
    assert!(s.test.is_none());
}

#[test]
fn idx_rejects_bad_files_with_their_name() {
    let p = Path::new("x-images-idx3-ubyte");
    let e = err_text(idx::parse(p, &[1, 2, 8, 3]));
    assert!(e.contains("magic") && e.contains("x-images"), "{e}");
    let e = err_text(idx::parse(p, &idx_bytes(&[2, 2, 2], &[0; 7])));
    assert!(e.contains("truncated") && e.contains("need 8"), "{e}");
    let e = err_text(idx::parse(p, &[0, 0, 8]));
    assert!(e.contains("truncated"), "{e}");
    let e = err_text(idx::parse(p, &[0, 0, 0x0d, 1, 0, 0, 0, 0]));
    assert!(e.contains("not supported"), "{e}");
    // Labels that do not match the images.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("train-images-idx3-ubyte"),
        idx_bytes(&[3, 1, 1], &[0; 3]),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("train-labels-idx1-ubyte"),
        idx_bytes(&[2], &[0; 2]),
    )
    .unwrap();
    let e = err_text(idx::load_dir(dir.path()));
    assert!(e.contains("2 labels for 3 images"), "{e}");
    // A truncated gzip stream.
    let mut g = gz(&idx_bytes(&[3, 1, 1], &[0; 3]));
    g.truncate(g.len() / 2);
    std::fs::write(dir.path().join("train-images-idx3-ubyte.gz"), g).unwrap();
    let e = err_text(idx::load_dir(dir.path()));
    assert!(e.contains("train-images-idx3-ubyte.gz"), "{e}");
    let e = err_text(idx::load_dir(&dir.path().join("missing")));
    assert!(e.contains("missing"), "{e}");
}

#[test]
fn idx_reads_the_real_fashion_mnist() {
    let s = DataSource::Idx(crate::shared_data().join("fashion-mnist"))
        .load()
        .unwrap();
    assert_eq!(s.train.len(), 60_000);
    assert_eq!(s.test.as_ref().unwrap().len(), 10_000);
    assert_eq!(s.train.num_classes(), 10);
    assert_eq!(s.train.class_names[9], "Boot");
}

#[test]
fn embedded_data_is_the_fashion_subset() {
    let s = DataSource::Embedded.load().unwrap();
    assert_eq!(
        (s.train.len(), s.test.as_ref().unwrap().len()),
        (10_000, 10_000)
    );
    // Equal to the first images of the real files.
    let real = DataSource::Idx(crate::shared_data().join("fashion-mnist"))
        .load()
        .unwrap();
    assert_eq!(s.train.image(9_999), real.train.image(9_999));
    assert_eq!(
        s.test.unwrap().labels.unwrap()[..],
        real.test.unwrap().labels.unwrap()[..]
    );
}

fn cifar_record(label: u8, fill: u8) -> Vec<u8> {
    let mut r = vec![label];
    r.extend(std::iter::repeat_n(fill, 3072));
    r
}

#[test]
fn cifar10_reads_batches_and_rejects_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = cifar_record(3, 10);
    b.extend(cifar_record(9, 20));
    std::fs::write(dir.path().join("data_batch_1.bin"), &b).unwrap();
    std::fs::write(dir.path().join("test_batch.bin"), cifar_record(1, 30)).unwrap();
    let s = cifar::load_cifar10_dir(dir.path()).unwrap();
    assert_eq!(s.train.len(), 2);
    assert_eq!(s.train.labels, Some(vec![3, 9]));
    assert_eq!((s.train.channels, s.train.height), (3, 32));
    assert_eq!(s.test.unwrap().image(0)[100], 30);
    b.truncate(3073 + 100);
    std::fs::write(dir.path().join("data_batch_1.bin"), &b).unwrap();
    let e = err_text(cifar::load_cifar10_dir(dir.path()));
    assert!(
        e.contains("truncated") && e.contains("data_batch_1.bin"),
        "{e}"
    );
    let e = err_text(cifar::parse(Path::new("b.bin"), &cifar_record(12, 0), 1));
    assert!(e.contains("label 12"), "{e}");
    let e = err_text(cifar::load_cifar10_dir(tempfile::tempdir().unwrap().path()));
    assert!(e.contains("no data_batch"), "{e}");
}

#[test]
fn cifar100_reads_fine_labels() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = vec![4u8, 77];
    r.extend(vec![5u8; 3072]);
    std::fs::write(dir.path().join("train.bin"), &r).unwrap();
    let s = cifar::load_cifar100_dir(dir.path()).unwrap();
    assert_eq!(s.train.labels, Some(vec![77]));
}

#[test]
fn folder_reads_classes_and_rejects_bad_images() {
    let dir = tempfile::tempdir().unwrap();
    let src = crate::shared_data().join("cifar10-samples");
    let mut n = 0;
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if let Some(rest) = name.strip_prefix("cifar10_") {
            let label = rest
                .trim_end_matches(".png")
                .split('_')
                .nth(1)
                .unwrap()
                .to_string();
            let class_dir = dir.path().join(format!("class{label}"));
            std::fs::create_dir_all(&class_dir).unwrap();
            std::fs::copy(&p, class_dir.join(&name)).unwrap();
            n += 1;
        }
    }
    // A grey JPEG of another size joins class "zphoto": converted to RGB and resized.
    let photo = image::open(crate::shared_data().join("photos/baboon.jpg"))
        .unwrap()
        .to_luma8();
    std::fs::create_dir_all(dir.path().join("zphoto")).unwrap();
    photo.save(dir.path().join("zphoto/grey.png")).unwrap();
    // An RGBA PNG smaller than the side (upscaled) joins it too.
    let rgba = image::RgbaImage::from_pixel(7, 5, image::Rgba([200, 10, 10, 128]));
    rgba.save(dir.path().join("zphoto/small_rgba.png")).unwrap();
    let d = folder::load_folder(dir.path(), 32, true).unwrap();
    assert_eq!(d.len(), n + 2);
    assert_eq!((d.channels, d.height, d.width), (3, 32, 32));
    assert!(d.class_names.len() >= 2);
    // A corrupt image and a zero-byte image: strict loading names them in the error; the
    // default skips them (with a warning) and keeps the good ones with their labels.
    std::fs::write(
        dir.path().join("zphoto/broken.jpg"),
        b"\xff\xd8\xff\xe0 not really a jpeg",
    )
    .unwrap();
    let e = err_text(folder::load_folder(dir.path(), 32, true));
    assert!(e.contains("broken.jpg"), "{e}");
    std::fs::write(dir.path().join("zphoto/empty.png"), b"").unwrap();
    std::fs::remove_file(dir.path().join("zphoto/broken.jpg")).unwrap();
    let e = err_text(folder::load_folder(dir.path(), 32, true));
    assert!(e.contains("empty.png") && e.contains("0 bytes"), "{e}");
    std::fs::write(
        dir.path().join("zphoto/broken.jpg"),
        b"\xff\xd8\xff\xe0 not really a jpeg",
    )
    .unwrap();
    let lenient = folder::load_folder(dir.path(), 32, false).unwrap();
    assert_eq!(lenient.len(), n + 2);
    assert_eq!(lenient.labels.as_ref().unwrap(), d.labels.as_ref().unwrap());
    // A folder of nothing but unreadable images fails either way.
    let bad = tempfile::tempdir().unwrap();
    std::fs::write(bad.path().join("x.png"), b"").unwrap();
    let e = err_text(folder::load_folder(bad.path(), 32, false));
    assert!(e.contains("none of its 1 images"), "{e}");
    // An empty folder.
    let empty = tempfile::tempdir().unwrap();
    let e = err_text(folder::load_folder(empty.path(), 32, false));
    assert!(e.contains("no image (PNG, JPEG"), "{e}");
}

#[test]
fn data_source_parses_and_rejects() {
    assert_eq!(
        "idx:/a/b".parse::<DataSource>().unwrap(),
        DataSource::Idx("/a/b".into())
    );
    assert_eq!(
        "embedded".parse::<DataSource>().unwrap(),
        DataSource::Embedded
    );
    assert!(
        "tar:/x"
            .parse::<DataSource>()
            .unwrap_err()
            .to_string()
            .contains("unknown data kind")
    );
    assert!("nocolon".parse::<DataSource>().is_err());
}

/// Random mutations of valid IDX, CIFAR and config inputs (bytes flipped, inserted, cut):
/// every reader returns a value or an error, never panics (a cheap stand-in for the fuzzers
/// run outside `cargo test`).
#[test]
fn readers_survive_mutated_input() {
    let mut s = 77u64;
    let mut next = move |m: usize| {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 33) as usize) % m.max(1)
    };
    let path = Path::new("mutant");
    let idx_seed = idx_bytes(&[3, 4, 5], &(0..60).map(|i| i as u8).collect::<Vec<_>>());
    let mut cifar_seed = vec![3u8];
    cifar_seed.extend(vec![9u8; 3072]);
    let toml_seed = selfsup::config::RunConfig::default().to_toml().into_bytes();
    for round in 0..3000 {
        let (seed, kind) = match round % 3 {
            0 => (&idx_seed, 0),
            1 => (&cifar_seed, 1),
            _ => (&toml_seed, 2),
        };
        let mut b = seed.clone();
        for _ in 0..1 + next(4) {
            match next(3) {
                0 if !b.is_empty() => {
                    let i = next(b.len());
                    b[i] = next(256) as u8;
                }
                1 => {
                    let i = next(b.len() + 1);
                    b.insert(i, next(256) as u8);
                }
                _ => b.truncate(next(b.len() + 1)),
            }
        }
        let outcome = std::panic::catch_unwind(|| match kind {
            0 => drop(idx::parse(path, &b)),
            1 => drop(cifar::parse(path, &b, 1)),
            _ => {
                if let Ok(text) = std::str::from_utf8(&b) {
                    if let Ok(c) = toml::from_str::<selfsup::config::RunConfig>(text) {
                        let _ = c.validate();
                    }
                }
            }
        });
        assert!(
            outcome.is_ok(),
            "round {round} panicked on {:?}",
            &b[..b.len().min(64)]
        );
    }
}
