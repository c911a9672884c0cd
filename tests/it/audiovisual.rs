//! Images and sounds together: video frames paired with the sound around them, the CMA
//! positive sets on hand-made banks, and AVID + CMA learning on real image + sound pairs.

use selfsup::config::RunConfig;
use selfsup::data::{DataSource, LoadOptions};
use selfsup::features::mel::{MelConfig, Spectrogram};
use selfsup::memory::bank::MemoryBank;
use selfsup::methods::audiovisual::avid_cma::{Agreement, agreement_positives};

fn video_options(side: usize) -> LoadOptions {
    let mut opts = LoadOptions::default();
    opts.video.side = side;
    opts
}

#[test]
fn video_frames_come_with_the_sound_around_them() {
    let dir = super::shared_data().join("video");
    let opts = video_options(16);
    let splits = DataSource::AudioVisual(dir.clone())
        .load_with(&opts)
        .unwrap();
    let (train, test) = (&splits.train, splits.test.as_ref().unwrap());
    // Only Megamind and bigbuckbunny have a sound track; the last fifth of each is held out.
    assert_eq!(train.class_names, ["Megamind", "bigbuckbunny"]);
    assert_eq!(train.clips.len(), 2);
    let whole: Vec<usize> = (0..2)
        .map(|c| train.clips[c].len() + test.clips[c].len())
        .collect();
    for c in 0..2 {
        assert_eq!(test.clips[c].len(), whole[c] / 5, "clip {c}");
    }
    let sounds = train.sounds.as_ref().unwrap();
    assert_eq!(sounds.len(), train.len());
    assert_eq!(test.sounds.as_ref().unwrap().len(), test.len());
    // One second of sound per frame: 100 spectrogram frames at a 160-sample hop of 16 kHz.
    assert!(sounds.iter().all(|s| s.frames == 100 && s.n_mels == 64));

    // Frame i of n sits at (i + 0.5) d / n seconds: its sound is the track's spectrogram
    // from 0.5 s before that to 0.5 s after.
    let mel = MelConfig::default();
    let track = selfsup::data::audio::read_video_audio(
        &dir.join("Megamind.avi"),
        mel.sample_rate,
        "ffmpeg",
    )
    .unwrap();
    let spec = Spectrogram::of(&track.samples, &mel);
    let n = whole[0];
    for i in [0, n / 3, train.clips[0].len() - 1] {
        let centre = (i as f64 + 0.5) * track.seconds() / n as f64 * 100.0;
        let start = ((centre - 50.0).round().max(0.0) as usize).min(spec.frames - 100);
        assert_eq!(sounds[i].data, spec.excerpt(start, 100).data, "frame {i}");
    }
    // Neighbouring frames hear almost the same second; frames far apart do not.
    let diff = |a: &Spectrogram, b: &Spectrogram| {
        a.data
            .iter()
            .zip(&b.data)
            .map(|(x, y)| (x - y).abs())
            .sum::<f32>()
            / a.data.len() as f32
    };
    assert!(diff(&sounds[100], &sounds[101]) < diff(&sounds[100], &sounds[200]));

    // Holding out a clip by name.
    let mut named = video_options(16);
    named.video.holdout = vec!["bigbuckbunny".into()];
    let s = DataSource::AudioVisual(dir.clone())
        .load_with(&named)
        .unwrap();
    assert_eq!(s.train.class_names, ["Megamind"]);
    assert_eq!(s.test.unwrap().len(), whole[1]);

    // A video without sound, named on its own: an error naming it.
    let e = DataSource::AudioVisual(dir.join("bikes.mp4"))
        .load_with(&opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("bikes.mp4") && e.contains("sound track"), "{e}");
    // A silent video beside an unreadable one: the silent one is skipped, the broken one is
    // an error naming it.
    let mixed = tempfile::tempdir().unwrap();
    std::fs::copy(dir.join("bikes.mp4"), mixed.path().join("bikes.mp4")).unwrap();
    std::fs::write(mixed.path().join("broken.mp4"), b"not a video").unwrap();
    let e = DataSource::AudioVisual(mixed.path().into())
        .load_with(&opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("broken.mp4") && e.contains("cannot read"), "{e}");
}

fn bank(rows: &[[f32; 2]]) -> MemoryBank {
    MemoryBank {
        data: rows.iter().flatten().copied().collect(),
        dim: 2,
    }
}

#[test]
fn cma_positives_are_the_neighbours_both_modalities_agree_on() {
    let device = burn::tensor::Device::flex();
    // Seen from instance 0: 1 looks the same but sounds different, 3 sounds the same but looks
    // different, 2 is fairly close in both.
    let visual = bank(&[[1.0, 0.0], [1.0, 0.0], [0.8, 0.6], [0.0, 1.0]]);
    let audio = bank(&[[1.0, 0.0], [0.0, 1.0], [0.8, 0.6], [1.0, 0.0]]);
    let first = |agreement| agreement_positives(&visual, &audio, 1, agreement, &device)[0].clone();
    assert_eq!(first(Agreement::Consensus), [2]);
    assert_eq!(first(Agreement::Visual), [1]);
    assert_eq!(first(Agreement::Audio), [3]);
    // Union: 1 and 3 tie at similarity 1; the lower index wins.
    assert_eq!(first(Agreement::Union), [1]);
    let all = agreement_positives(&visual, &audio, 3, Agreement::Consensus, &device);
    assert_eq!(all.len(), 4);
    for (i, set) in all.iter().enumerate() {
        assert_eq!(set.len(), 3);
        assert!(!set.contains(&i), "instance {i} is not its own positive");
    }
    // Instance 0's full ranking by min(visual, audio): 2 (0.8), then 1 and 3 (both 0).
    assert_eq!(all[0], [2, 1, 3]);
}

/// A run of `method` on the tuxpaint pairs (101 train / 20 held out): half-width backbone,
/// batch 32, AdamW at 1e-3; with the held-out metrics of the trained and the untrained model.
pub struct TuxpaintRun {
    /// The training outcome.
    pub out: selfsup::train::TrainOutcome,
    /// The data.
    pub splits: selfsup::data::Splits,
    /// The run folder.
    pub dir: tempfile::TempDir,
    /// Training time.
    pub secs: f64,
    /// Held-out metrics of the trained model.
    pub trained: Vec<(String, f64)>,
    /// Held-out metrics of the same model untrained.
    pub untrained: Vec<(String, f64)>,
}

impl TuxpaintRun {
    /// Metric `key` of the trained and of the untrained model.
    pub fn metric(&self, key: &str) -> (f64, f64) {
        let get = |m: &[(String, f64)]| m.iter().find(|(n, _)| n == key).unwrap().1;
        (get(&self.trained), get(&self.untrained))
    }
}

/// Prints the held-out retrieval AUCs in both directions (each a mean over the held-out
/// queries, with its SE `sd / sqrt(n)`, `*_auc_se`) and their distance from chance (1/2) in
/// SE, without asserting them: on 20 held-out pairs the AUC's SE is 5-7 points and its value
/// moves with the seed (AVC sound-to-image 0.73 at seed offset 0, 0.57 at 1), so no held-out
/// claim holds by 3 SE at this data size.
pub fn print_retrieval_against_chance(method: &str, run: &TuxpaintRun) {
    for what in ["sound_to_image", "image_to_sound"] {
        let (auc, auc0) = run.metric(&format!("{what}_auc"));
        let (se, se0) = run.metric(&format!("{what}_auc_se"));
        println!(
            "{method} held-out {what} AUC (not claimed) {auc:.3} +- {se:.3} = {:.1} SE over chance (untrained {auc0:.3} +- {se0:.3})",
            (auc - 0.5) / se
        );
    }
}

/// The CMA positives per instance in these runs (the default).
fn cfg_positives() -> usize {
    selfsup::methods::audiovisual::avid_cma::AvidCmaConfig::default().positives
}

/// Trains `method` for `epochs` on the tuxpaint pairs (see [`TuxpaintRun`]).
pub fn tuxpaint_run(method: &str, epochs: usize) -> TuxpaintRun {
    let mut cfg = RunConfig {
        method: method.into(),
        data: DataSource::AudioVisual(super::shared_data().join("audiovisual/tuxpaint")),
        epochs,
        batch_size: 32,
        log_every: 1,
        // The size the learning margins were measured at (the default is 64).
        folder_side: 32,
        ..RunConfig::default()
    };
    cfg.backbone.width = 0.5;
    cfg.optim.kind = selfsup::train::optim::OptimizerKind::AdamW;
    cfg.optim.weight_decay = 1e-4;
    cfg.schedule.lr = 1e-3;
    let splits = cfg.data.load_with(&cfg.load_options()).unwrap();
    cfg.fit_views_to(&splits.train);
    let test = splits.test.as_ref().unwrap();
    assert_eq!((splits.train.len(), test.len()), (101, 20));
    let dir = tempfile::tempdir().unwrap();
    let t = std::time::Instant::now();
    let out = super::pretrain_in(
        &cfg,
        std::sync::Arc::new(splits.train.clone()),
        dir.path(),
        false,
    );
    let secs = t.elapsed().as_secs_f64();
    let trained = out.method.pretext_metrics(test, 0);
    let untrained = super::untrained_method(&cfg, &splits.train).pretext_metrics(test, 0);
    TuxpaintRun {
        out,
        splits,
        dir,
        secs,
        trained,
        untrained,
    }
}

#[test]
fn avid_cma_aligns_held_out_sounds_and_images_and_finds_same_category_positives() {
    let run = tuxpaint_run("avid_cma", 30);
    let (out, splits, secs) = (&run.out, &run.splits, run.secs);
    let (r, r0) = run.metric("sound_to_image_recall_at_5");
    let (q, q0) = run.metric("image_to_sound_recall_at_5");
    // The CMA diagnostic: how often a positive shares its instance's category, against the
    // rate of a random other instance.
    let metrics = std::fs::read_to_string(run.dir.path().join("metrics.jsonl")).unwrap();
    let same: Vec<f64> = metrics
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["cma_positives_same_label"].as_f64())
        .collect();
    let labels = splits.train.labels.as_ref().unwrap();
    let n = labels.len();
    let chance = (0..n)
        .map(|i| (0..n).filter(|&j| j != i && labels[j] == labels[i]).count() as f64)
        .sum::<f64>()
        / (n * (n - 1)) as f64;
    println!(
        "avid_cma: {} steps in {secs:.0} s; on 20 held-out pairs: sound-to-image recall@5 {:.0} % (untrained {:.0} %), image-to-sound {:.0} % (untrained {:.0} %), chance 25 %; CMA positives of the same category {:.0} % (random {:.0} %)",
        out.steps,
        100.0 * r,
        100.0 * r0,
        100.0 * q,
        100.0 * q0,
        100.0 * same.last().copied().unwrap_or(0.0),
        100.0 * chance
    );
    // The AVID phase (the first half) lowers the cross-modal loss.
    let cma_step = out.steps as usize / 2;
    super::assert_loss_falls("avid", &out.losses[..cma_step - 3], 0, 0.2);
    print_retrieval_against_chance("avid", &run);
    assert!(!same.is_empty(), "CMA never started");
    // The fraction of the n x positives CMA positives that share their instance's category,
    // at its lowest over the CMA epochs, against 1.5 x the random rate: binomial SE.
    let lowest = same.iter().copied().fold(f64::INFINITY, f64::min);
    let se = crate::margin::se_vs_chance(lowest, 1.5 * chance, n * cfg_positives());
    crate::margin::assert_above(
        "CMA positives of the same category over 1.5 x random",
        lowest,
        1.5 * chance,
        se,
        0.0,
    );
}
