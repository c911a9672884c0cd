//! Learning assertions with a margin in standard errors.
//!
//! A learning test compares a trained model with a baseline (random init, the untrained
//! method, chance, the loss at the start). It must not pass or fail by noise: burn's kernels
//! differ between CPUs (AVX2, AVX-512), so every seeded trajectory differs by machine. Each
//! claim here passes only when the gap is at least [`MIN_SE`] standard errors of the
//! quantity compared, and prints one line
//! `margin <claim>: <value> vs <baseline>, gap <gap> = <k> SE (SE <se>)`, so a run's margins
//! can be collected with `grep '^margin '` (see `docs/testing.md`).
//!
//! `SELFSUP_TEST_SEED` (default 0) is added to the seed of every learning run
//! ([`crate::seeded`]), to check the margins under other seeds.

/// The smallest margin a learning claim may have, in standard errors.
pub const MIN_SE: f64 = 3.0;

/// The standard error of the difference of two accuracies `a` and `b`, each measured on `n`
/// items: `sqrt(a(1-a)/n + b(1-b)/n)`, the binomial SE of each side combined as if the two
/// were independent. On the same items (a paired comparison) the true SE of the difference is
/// smaller, so this is conservative.
pub fn se_two_accuracies(a: f64, b: f64, n: usize) -> f64 {
    let n = n.max(1) as f64;
    (a * (1.0 - a) / n + b * (1.0 - b) / n).sqrt()
}

/// The standard error of an accuracy `a` measured on `n` items, compared with a fixed chance
/// rate `c`: the larger of the two binomial SEs `sqrt(p(1-p)/n)`, p in {a, c} (the spread of
/// `a` itself, or of a chance-level model's score under the null).
pub fn se_vs_chance(a: f64, c: f64, n: usize) -> f64 {
    let n = n.max(1) as f64;
    (a * (1.0 - a)).max(c * (1.0 - c)).sqrt() / n.sqrt()
}

/// The standard error of the difference of the means of two samples (Welch):
/// `sqrt(s_x^2 / n_x + s_y^2 / n_y)` with the unbiased sample variances.
pub fn se_two_means(xs: &[f64], ys: &[f64]) -> f64 {
    let var_of_mean = |v: &[f64]| {
        let n = v.len() as f64;
        let m = v.iter().sum::<f64>() / n;
        v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0) / n
    };
    (var_of_mean(xs) + var_of_mean(ys)).sqrt()
}

/// Asserts that `value` exceeds `baseline` by at least [`MIN_SE`] standard errors `se` (and
/// by more than `min_gap`, a floor for the practical size of the effect).
pub fn assert_above(claim: &str, value: f64, baseline: f64, se: f64, min_gap: f64) {
    assert_gap(claim, value, baseline, value - baseline, se, min_gap);
}

/// Asserts that `value` is below `baseline` by at least [`MIN_SE`] standard errors `se` (and
/// by more than `min_gap`): for losses and errors, where lower is better.
pub fn assert_below(claim: &str, value: f64, baseline: f64, se: f64, min_gap: f64) {
    assert_gap(claim, value, baseline, baseline - value, se, min_gap);
}

fn assert_gap(claim: &str, value: f64, baseline: f64, gap: f64, se: f64, min_gap: f64) {
    report(claim, value, baseline, gap, se);
    assert!(
        gap >= MIN_SE * se && gap > min_gap,
        "{claim}: {value:.4} vs {baseline:.4} is a gap of {gap:.4} = {:.1} SE (SE {se:.4}); \
         the claim needs at least {MIN_SE} SE and more than {min_gap}",
        gap / se
    );
}

/// Asserts that a held-out accuracy `acc` on `n` items beats the untrained model's and
/// `chance`, each by 3 SE (binomial, [`se_two_accuracies`] and [`se_vs_chance`]) and by more
/// than `min_gap`.
pub fn assert_accuracy_over_untrained_and_chance(
    claim: &str,
    acc: f64,
    untrained: f64,
    chance: f64,
    n: usize,
    min_gap: f64,
) {
    let se = se_two_accuracies(acc, untrained, n);
    assert_above(
        &format!("{claim} over untrained"),
        acc,
        untrained,
        se,
        min_gap,
    );
    let se = se_vs_chance(acc, chance, n);
    assert_above(&format!("{claim} over chance"), acc, chance, se, min_gap);
}

fn report(claim: &str, value: f64, baseline: f64, gap: f64, se: f64) {
    println!(
        "margin {claim}: {value:.4} vs {baseline:.4}, gap {gap:.4} = {:.1} SE (SE {se:.4}), seed offset {}",
        gap / se.max(1e-12),
        crate::seed_offset()
    );
}

#[test]
fn standard_errors_match_hand_computed_values() {
    // 0.8 and 0.7 on 100 items: sqrt(0.16/100 + 0.21/100) = sqrt(0.0037).
    assert!((se_two_accuracies(0.8, 0.7, 100) - 0.0037f64.sqrt()).abs() < 1e-12);
    // Chance 0.5 has the larger spread than 0.9: sqrt(0.25 / 25) = 0.1.
    assert!((se_vs_chance(0.9, 0.5, 25) - 0.1).abs() < 1e-12);
    // Samples {1, 2, 3} (variance 1) and {5, 7} (variance 2): sqrt(1/3 + 2/2).
    let se = se_two_means(&[1.0, 2.0, 3.0], &[5.0, 7.0]);
    assert!((se - (1.0f64 / 3.0 + 1.0).sqrt()).abs() < 1e-12, "{se}");
}

#[test]
#[should_panic(expected = "needs at least 3 SE")]
fn a_gap_within_noise_fails() {
    // 2 points on 1,000 items at 75 %: SE 1.9 points, about 1 SE.
    assert_above(
        "noise",
        0.77,
        0.75,
        se_two_accuracies(0.77, 0.75, 1000),
        0.0,
    );
}

/// `method`'s held-out metrics on `chunks` disjoint, equal slices of the first `n` items of
/// `test` (batch means): the spread of a metric over the slices gives the SE of its value on
/// all `n` ([`se_over_chunks`]) where the metric is an average the method does not report
/// per item (reconstruction errors, cross-entropies).
pub fn chunk_metrics(
    method: &dyn selfsup::methods::Method,
    test: &selfsup::data::Dataset,
    n: usize,
    chunks: usize,
) -> Vec<Vec<(String, f64)>> {
    let size = n.min(test.len()) / chunks;
    (0..chunks)
        .map(|c| {
            let indices: Vec<usize> = (c * size..(c + 1) * size).collect();
            method.pretext_metrics(&test.subset(&indices), size)
        })
        .collect()
}

/// The SE of the mean over all slices of `f(slice metrics)`: `sd / sqrt(slices)` (the batch
/// means estimate; each slice is an independent set of held-out items).
pub fn se_over_chunks(
    chunks: &[Vec<(String, f64)>],
    f: impl Fn(&dyn Fn(&str) -> f64) -> f64,
) -> f64 {
    let values: Vec<f64> = chunks
        .iter()
        .map(|m| {
            let get = |k: &str| {
                m.iter()
                    .find(|(n, _)| n == k)
                    .unwrap_or_else(|| panic!("no {k} in {m:?}"))
                    .1
            };
            f(&get)
        })
        .collect();
    let k = values.len() as f64;
    let mean = values.iter().sum::<f64>() / k;
    (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (k - 1.0) / k).sqrt()
}
