"""The VOC07 SVM protocol with scikit-learn, as VISSL runs it, for comparison with
`selfsup eval svm` on the same features (a benchmark, not a dependency of the product).

    selfsup embed --checkpoint RUN/last.safetensors --split train --out /tmp/f_train.npy
    selfsup embed --checkpoint RUN/last.safetensors --split test  --out /tmp/f_test.npy
    python3 bench/svm_sklearn.py /tmp/f_train.npy /tmp/f_test.npy [COSTS]
"""
import sys
import time

import numpy as np
from sklearn.model_selection import cross_val_score
from sklearn.svm import LinearSVC


def calculate_ap(rec, prec):
    """VISSL's vissl/utils/svm_utils/evaluate.py: area under the monotone PR curve."""
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    idx = np.where(mrec[1:] != mrec[:-1])[0] + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mpre[idx]))


def test_ap(targets, scores):
    order = np.argsort(-scores, kind="stable")
    t = targets[order] > 0
    tp = np.cumsum(t)
    fp = np.cumsum(~t)
    return calculate_ap(tp / t.sum(), tp / (tp + fp))


def main():
    train, test = np.load(sys.argv[1]).astype(np.float64), np.load(sys.argv[2]).astype(np.float64)
    ytr = np.load(sys.argv[1].replace(".npy", ".labels.npy"))
    yte = np.load(sys.argv[2].replace(".npy", ".labels.npy"))
    costs = [float(c) for c in sys.argv[3].split(",")] if len(sys.argv) > 3 else [
        0.01, 0.1, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 50.0, 100.0, 1000.0]
    norm = lambda f: f / (np.linalg.norm(f, axis=1) + 1e-5)[:, None]
    train, test = norm(train), norm(test)
    start = time.time()
    aps = []
    print("| class | best cost | 3-fold CV AP | test AP |")
    for c in range(int(ytr.max()) + 1):
        y = np.where(ytr == c, 1, -1)
        make = lambda cost: LinearSVC(C=cost, class_weight={1: 2, -1: 1}, intercept_scaling=1.0,
                                      penalty="l2", loss="squared_hinge", tol=1e-4, dual=True,
                                      max_iter=2000)
        cv = [cross_val_score(make(k), train, y, cv=3, scoring="average_precision").mean() for k in costs]
        best = int(np.argmax(cv))
        clf = make(costs[best]).fit(train, y)
        ap = test_ap(np.where(yte == c, 1, 0), clf.decision_function(test))
        aps.append(ap)
        print(f"| {c} | {costs[best]} | {100 * cv[best]:.2f} | {100 * ap:.2f} |")
    print(f"\nscikit-learn LinearSVC mAP: {100 * np.mean(aps):.2f} % in {time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
