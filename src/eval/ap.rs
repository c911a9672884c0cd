//! Average precision of a ranking, as the VOC07 SVM benchmark computes it.
//!
//! Scores are sorted from high to low; tied scores form one group, counted at once, so the
//! result does not depend on the input order (VISSL's `get_precision_recall` breaks ties by
//! NumPy's sort order instead).

/// Precision and recall after each group of tied scores, high scores first; `None` when
/// there is no positive (recall is undefined).
pub fn precision_recall(scores: &[f32], positive: &[bool]) -> Option<(Vec<f64>, Vec<f64>)> {
    assert_eq!(scores.len(), positive.len(), "one label per score");
    let n_pos = positive.iter().filter(|&&p| p).count();
    if n_pos == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp) = (0usize, 0usize);
    let (mut prec, mut rec) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < order.len() {
        let s = scores[order[i]];
        while i < order.len() && scores[order[i]] == s {
            if positive[order[i]] {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        prec.push(tp as f64 / (tp + fp) as f64);
        rec.push(tp as f64 / n_pos as f64);
    }
    Some((prec, rec))
}

/// The VOC (2010+) AP that VISSL's `calculate_ap` computes for the test split: the area under
/// the precision-recall curve after making precision monotone (each precision replaced by the
/// best precision at any higher recall). `None` without positives.
pub fn voc_ap(scores: &[f32], positive: &[bool]) -> Option<f64> {
    let (prec, rec) = precision_recall(scores, positive)?;
    let mut mpre: Vec<f64> = std::iter::once(0.0).chain(prec).chain([0.0]).collect();
    let mrec: Vec<f64> = std::iter::once(0.0).chain(rec).chain([1.0]).collect();
    for i in (0..mpre.len() - 1).rev() {
        mpre[i] = mpre[i].max(mpre[i + 1]);
    }
    Some(
        (1..mrec.len())
            .filter(|&i| mrec[i] != mrec[i - 1])
            .map(|i| (mrec[i] - mrec[i - 1]) * mpre[i])
            .sum(),
    )
}

/// scikit-learn's `average_precision_score` (what VISSL's cross-validation scores with): the
/// sum over thresholds of the recall step times the precision there, without interpolation.
/// `None` without positives.
pub fn step_ap(scores: &[f32], positive: &[bool]) -> Option<f64> {
    let (prec, rec) = precision_recall(scores, positive)?;
    let mut last = 0.0;
    let mut ap = 0.0;
    for (p, r) in prec.iter().zip(&rec) {
        ap += (r - last) * p;
        last = *r;
    }
    Some(ap)
}
