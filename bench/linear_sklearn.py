"""The linear probe with scikit-learn, for comparison with `selfsup eval linear` on the same
features (a benchmark, not a dependency of the product): standardized features, multinomial
LogisticRegression (lbfgs), the L2 penalty chosen on a held-out tenth of the train features,
then refit on all of them, as src/eval/linear.rs does.

    selfsup embed --checkpoint RUN/last.safetensors --split train --out /tmp/f_train.npy
    selfsup embed --checkpoint RUN/last.safetensors --split test  --out /tmp/f_test.npy
    python3 bench/linear_sklearn.py /tmp/f_train.npy /tmp/f_test.npy
    selfsup eval linear --checkpoint RUN/last.safetensors      # the same split, to compare
"""
import sys
import time

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler


def probe(train, ytr, test, yte, verbose=False):
    """Test top-1 (%) and the chosen C of the probe fit on `train`."""
    scaler = StandardScaler().fit(train)
    xtr, xte = scaler.transform(train), scaler.transform(test)
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(xtr))
    val, fit = perm[: len(xtr) // 10], perm[len(xtr) // 10:]
    best = None
    # C = 1 / (n * weight_decay) maps selfsup's grid {0, 1e-4, 1e-3} onto scikit-learn's
    # parametrization (its loss is a sum, selfsup's a mean), with C = 1e4 for "no penalty".
    n = len(fit)
    for c in [1e4, 1.0 / (n * 1e-4), 1.0 / (n * 1e-3)]:
        m = LogisticRegression(C=c, max_iter=2000).fit(xtr[fit], ytr[fit])
        acc = (m.predict(xtr[val]) == ytr[val]).mean()
        if verbose:
            print(f"C = {c:.4g}: validation {100 * acc:.2f} %")
        if best is None or acc > best[0]:
            best = (acc, c)
    m = LogisticRegression(C=best[1], max_iter=2000).fit(xtr, ytr)
    return 100.0 * (m.predict(xte) == yte).mean(), best[1]


def main():
    train, test = np.load(sys.argv[1]).astype(np.float64), np.load(sys.argv[2]).astype(np.float64)
    ytr = np.load(sys.argv[1].replace(".npy", ".labels.npy"))
    yte = np.load(sys.argv[2].replace(".npy", ".labels.npy"))
    t0 = time.time()
    acc, c = probe(train, ytr, test, yte, verbose=True)
    print(f"scikit-learn LogisticRegression, C = {c:.4g}: test top-1 {acc:.2f} % "
          f"({len(train)} train, {len(test)} test, {train.shape[1]} dims, {time.time() - t0:.1f} s)")


if __name__ == "__main__":
    main()
