"""How often `selfsup neighbors` finds images of the query's class. Two steps, from the
project root (queries: the first N images of each class of Fashion-MNIST's test set, written as
PNG files named by class; the searched images are the embedded data's train split):

    python3 bench/neighbors_check.py write ../shared/data/fashion-mnist runs/queries 10
    cargo run --release -- neighbors --checkpoint RUN/last.safetensors --data embedded \
        --query runs/queries/*.png -k 5 --out runs/found
    python3 bench/neighbors_check.py score runs/found/neighbors.csv

`score` prints the share of neighbours that have the query's class, and the share of queries
whose neighbours are mostly of its class, with 95 % intervals (Wilson, over queries).
"""
import csv
import gzip
import math
import pathlib
import sys

import numpy as np
from PIL import Image

def write(src, out, per_class):
    src, out = pathlib.Path(src), pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with gzip.open(src / "t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(src / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    for c in range(10):
        for n, i in enumerate(np.flatnonzero(labels == c)[:per_class]):
            Image.fromarray(images[i]).save(out / f"{c}-{n:03d}.png")
    print(f"wrote {10 * per_class} queries to {out}")


def wilson(k, n):
    p, z = k / n, 1.96
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return c - h, c + h


def score(path):
    by_query = {}
    for row in csv.DictReader(open(path)):
        q = int(pathlib.Path(row["query"]).name.split("-")[0])
        by_query.setdefault(row["query"], []).append(row["class"] == CLASSES[q])
    hits = sum(sum(v) for v in by_query.values())
    total = sum(len(v) for v in by_query.values())
    majority = sum(sum(v) * 2 > len(v) for v in by_query.values())
    n = len(by_query)
    # Neighbours of one query are not independent: the interval is over queries, from the
    # per-query share's standard error.
    shares = np.array([np.mean(v) for v in by_query.values()])
    se = shares.std(ddof=1) / math.sqrt(n)
    lo, hi = wilson(majority, n)
    print(f"{n} queries: {100 * hits / total:.1f} % of neighbours share the query's class "
          f"(± {196 * se:.1f}); {100 * majority / n:.1f} % of queries have mostly same-class "
          f"neighbours [{100 * lo:.1f}, {100 * hi:.1f}]")


# The class names selfsup gives Fashion-MNIST's labels (src/data/idx.rs).
CLASSES = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Boot"]

if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        score(sys.argv[2])
