//! `report.html` in a real browser: a small labeled folder run with snapshots and `--eval`,
//! its page loaded by headless Chromium (Debian's `chromium-headless-shell`, or `chromium`):
//! every figure decodes, no script error, nothing fetched from the network, and the rendered
//! page is not blank.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A headless Chromium on this machine; the test needs one (`.ci/run` installs it).
fn chromium() -> PathBuf {
    for name in ["chromium-headless-shell", "chromium", "chromium-browser"] {
        for dir in std::env::var("PATH").unwrap_or_default().split(':') {
            let p = Path::new(dir).join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "no headless Chromium found: install Debian's chromium-headless-shell (or chromium) \
         to run the report test"
    );
}

fn browse(page: &Path, profile: &Path, args: &[&str]) -> std::process::Output {
    Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs")
}

#[test]
fn report_html_loads_in_a_headless_browser_with_all_its_figures() {
    let dir = tempfile::tempdir().unwrap();
    // train/ and test/ of two CIFAR-10 classes, from the sample images (label in the name).
    let samples = crate::shared_data().join("cifar10-samples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&samples)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("cifar10_"))
        .collect();
    files.sort();
    // Each class (two or four images) gives its first image to test/, the rest to train/.
    let mut seen = std::collections::HashSet::new();
    for f in &files {
        let stem = f.file_stem().unwrap().to_string_lossy();
        let class = stem.rsplit('_').next().unwrap().to_string();
        let split = if seen.insert(class.clone()) {
            "test"
        } else {
            "train"
        };
        let to = dir
            .path()
            .join("data")
            .join(split)
            .join(format!("c{class}"));
        std::fs::create_dir_all(&to).unwrap();
        std::fs::copy(f, to.join(f.file_name().unwrap())).unwrap();
    }
    let run = dir.path().join("run");
    let data = format!("folder:{}", dir.path().join("data").display());
    let out = Command::new(env!("CARGO_BIN_EXE_selfsup"))
        .args([
            "pretrain",
            "--data",
            &data,
            "--image-size",
            "32",
            "--epochs",
            "2",
        ])
        .args(["--batch-size", "8", "--set", "backbone.width=0.25"])
        .args(["--set", "keep_epoch_snapshots=true", "--set", "log_every=1"])
        .args(["--eval", "--quiet", "--out"])
        .arg(&run)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = run.join("report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    // Self-contained: figures inline, nothing from the network.
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert!(html.contains("data:image/png;base64,"));
    assert!(html.contains("held-out accuracy over training time"));
    assert!(run.join("neighbors.png").exists() && run.join("tsne.png").exists());

    let profile = dir.path().join("profile");
    let dom = browse(&page, &profile, &["--dump-dom"]);
    let dom = String::from_utf8_lossy(&dom.stdout);
    let body = dom
        .find("<body")
        .map(|i| &dom[i..i + dom[i..].find('>').unwrap()])
        .unwrap_or_else(|| panic!("no page loaded: {dom}"));
    // loss, learning rate, throughput, held-out accuracy, neighbours, t-SNE.
    let figures: Vec<usize> = body
        .split("data-figures=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("the page's check did not run: {body}"))
        .split(" of ")
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(figures[1] >= 6 && figures[0] == figures[1], "{body}");
    assert!(body.contains("data-errors=\"\""), "{body}");

    let shot = dir.path().join("report.png");
    let arg = format!("--screenshot={}", shot.display());
    let out = browse(&page, &profile, &[&arg, "--window-size=1100,1400"]);
    assert!(shot.exists(), "{}", String::from_utf8_lossy(&out.stderr));
    let img = image::open(&shot).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (1100, 1400));
    // Text and charts: a good part of the page is not background white, and some of it is
    // the curves' colour (red).
    let inked = img.pixels().filter(|p| p.0 != [255, 255, 255]).count();
    let red = img
        .pixels()
        .filter(|p| p.0[0] > 180 && p.0[1] < 80 && p.0[2] < 120)
        .count();
    let total = (1100 * 1400) as usize;
    assert!(inked > total / 20, "{inked} of {total} pixels inked");
    assert!(red > 500, "{red} curve pixels");
}
