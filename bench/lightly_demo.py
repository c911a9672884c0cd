"""The demo's workload in PyTorch + lightly, for a side-by-side at equal wall time (a benchmark,
not a dependency of the product; needs torch, torchvision, lightly and scikit-learn, and
safetensors for `--export`).

SimCLR on the same 10,000 embedded Fashion-MNIST training images with the same ConvNet
(bench/torch_ref.py), lightly's recipe for small images (SGD lr 0.1 momentum 0.9 weight decay
5e-4, cosine, batch 128, NT-Xent T 0.5, crops 0.4-1, flips, colour jitter), trained for
`--seconds` of wall time (the demo's pretraining time), then frozen and scored on the 10,000
test images with a linear probe (bench/linear_sklearn.py's protocol) on two readouts: the
last block pooled globally, and selfsup's ConvNet default (the last three blocks each pooled
to 3x3, concatenated). Random init of the same network is scored the same way.

With `--export DIR` nothing is scored here: both networks are written as selfsup checkpoints
(`DIR/simclr/last.safetensors`, `DIR/random/last.safetensors`, the ConvNet's tensors under
selfsup's names, with a `config.toml` naming the view size), so that selfsup scores them with
the very probe, readout and test images it scores its own demo with:

    selfsup eval linear --checkpoint DIR/simclr/last.safetensors

Each exported checkpoint is checked: `selfsup embed` (`--selfsup PATH`, default
`target/release/selfsup`) must give this script's 3x3 features of the network to 1e-4 on every
scored image (at 28 px, where no resize is involved); the largest difference is printed.

`--size 42` trains on views of 42 px (the crops resized to 42), the size selfsup's demo views
28 px images at; the default, 28, is lightly's own recipe.

    python3 bench/lightly_demo.py --seconds 400 [--threads 2] [--validation] [--global-only]
                                  [--size 28] [--seed 0] [--export DIR]
"""
import argparse
import gzip
import json
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from linear_sklearn import probe as sklearn_probe
from torch_ref import ConvNet, Images

ASSETS = os.path.join(os.path.dirname(__file__), "..", "assets", "fashion-mnist")


def idx(name):
    with gzip.open(os.path.join(ASSETS, name)) as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def validation_split(labels, fraction=0.2, seed=0):
    """A fixed, class-balanced fifth of train (numpy's seed, not selfsup's ChaCha stream: the
    same size and balance, other images)."""
    rng = np.random.default_rng(seed)
    held = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        rng.shuffle(members)
        held[members[: int(round(len(members) * fraction))]] = True
    return np.flatnonzero(~held), np.flatnonzero(held)


def readouts(net, x):
    """(last block pooled globally, last three blocks pooled to 3x3 and concatenated)."""
    maps, h = [], x
    for layer in net.features:
        h = layer(h)
        if isinstance(layer, (nn.ReLU, nn.MaxPool2d)):
            maps.append(h)
    # Block outputs: after ReLU for block 1 and 4, after max-pool for blocks 2 and 3.
    blocks = [maps[0], maps[2], maps[4], maps[5]]
    grid = torch.cat([F.adaptive_avg_pool2d(b, 3).flatten(1) for b in blocks[1:]], 1)
    return blocks[3].mean(dim=(2, 3)), grid


@torch.no_grad()
def features(net, images):
    net.eval()
    outs = [[], []]
    for i in range(0, len(images), 500):
        x = torch.from_numpy(images[i:i + 500]).float().div(255).sub(0.5).div(0.5)[:, None]
        for o, f in zip(outs, readouts(net, x)):
            o.append(f.numpy())
    return [np.concatenate(o) for o in outs]


def probe(ftr, ytr, fte, yte):
    return sklearn_probe(ftr.astype(np.float64), ytr, fte.astype(np.float64), yte)[0]


def export(net, directory, size, validation):
    """Writes `net` as a selfsup checkpoint: `backbone.blocks.I.conv.weight` and
    `backbone.blocks.I.bn.*` (PyTorch's BatchNorm names, which selfsup's checkpoints use)."""
    from safetensors.torch import save_file

    convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
    norms = [m for m in net.features if isinstance(m, nn.BatchNorm2d)]
    tensors = {}
    for i, (conv, bn) in enumerate(zip(convs, norms)):
        tensors[f"backbone.blocks.{i}.conv.weight"] = conv.weight
        for name in ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]:
            tensors[f"backbone.blocks.{i}.bn.{name}"] = getattr(bn, name)
    os.makedirs(directory, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in tensors.items()},
              os.path.join(directory, "last.safetensors"),
              metadata={"method": "simclr", "source": "bench/lightly_demo.py"})
    with open(os.path.join(directory, "config.toml"), "w") as f:
        # Everything else at selfsup's defaults: the embedded data, the ConvNet, its readout,
        # views normalized with mean 0.5 and sd 0.5 as here.
        f.write(f'method = "simclr"\nvalidation = {str(validation).lower()}\n'
                f'\n[views]\nsize = {size}\n')


def verify_export(net, directory, images, selfsup):
    """Checks that selfsup reads the exported network as PyTorch does: `selfsup embed` of the
    checkpoint (its default readout, at 28 px, where no resize is involved) against this
    script's 3x3 readout of `net` on every scored image. Exits on a difference over 1e-4;
    returns the largest difference."""
    import subprocess

    out = os.path.join(directory, "check.npy")
    subprocess.run([selfsup, "embed", "--checkpoint", os.path.join(directory, "last.safetensors"),
                    "--set", "views.size=28", "--out", out], check=True, capture_output=True)
    theirs = np.load(out)
    ours = features(net, images)[1]
    diff = float(np.abs(theirs - ours).max())
    if diff > 1e-4:
        raise SystemExit(f"{directory}: selfsup's features differ from PyTorch's by {diff:.2e}")
    return diff


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--validation", action="store_true")
    p.add_argument("--global-only", action="store_true",
                   help="score only the last block pooled globally (scikit-learn's probe of the "
                        "4,032 3x3 values takes about 15 minutes a model on 2 cores)")
    p.add_argument("--seed", type=int, default=0, help="torch's seed (initialization, batches)")
    p.add_argument("--size", type=int, default=28,
                   help="side of the training views in pixels (28: lightly's recipe; 42: the "
                        "size selfsup's demo views 28 px images at)")
    p.add_argument("--export", metavar="DIR",
                   help="write both networks as selfsup checkpoints under DIR and score nothing")
    p.add_argument("--selfsup", default="target/release/selfsup",
                   help="the selfsup binary that --export checks its checkpoints with")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead
    from lightly.transforms import SimCLRTransform

    xtr, ytr = idx("train-images-idx3-ubyte.gz"), idx("train-labels-idx1-ubyte.gz")
    xte, yte = idx("t10k-images-idx3-ubyte.gz"), idx("t10k-labels-idx1-ubyte.gz")
    if a.validation:
        fit, val = validation_split(ytr)
        xtr, ytr, xte, yte = xtr[fit], ytr[fit], xtr[val], ytr[val]
    transform = SimCLRTransform(input_size=a.size, min_scale=0.4, cj_prob=0.8, random_gray_scale=0.0,
                                gaussian_blur=0.0, vf_prob=0.0, hf_prob=0.5, rr_prob=0.0,
                                normalize={"mean": [0.5], "std": [0.5]})
    ds = Images(xtr[:, None], transform)
    dl = torch.utils.data.DataLoader(ds, batch_size=128, shuffle=True, drop_last=True,
                                     num_workers=1, persistent_workers=True)
    net = ConvNet(1)
    random = ConvNet(1)
    random.load_state_dict(net.state_dict())
    head = SimCLRProjectionHead(256, 512, 128)
    params = list(net.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4)
    # Cosine over the steps the time budget allows, estimated from the first epoch.
    loss_fn = NTXentLoss(temperature=0.5)
    start, steps, epochs, total = time.perf_counter(), 0, 0, None
    while time.perf_counter() - start < a.seconds:
        net.train()
        for v1, v2 in dl:
            if time.perf_counter() - start >= a.seconds:
                break
            if total is not None:
                for g in opt.param_groups:
                    g["lr"] = 0.1 * 0.5 * (1 + np.cos(np.pi * min(steps / total, 1.0)))
            loss = loss_fn(head(net(v1)), head(net(v2)))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
        epochs += 1
        if total is None:
            per_step = (time.perf_counter() - start) / max(steps, 1)
            total = a.seconds / per_step
    train_s = time.perf_counter() - start
    out = {"seconds": train_s, "steps": steps, "epochs": epochs, "torch": torch.__version__,
           "split": "validation" if a.validation else "test", "n_test": int(len(yte)),
           "size": a.size, "seed": a.seed}
    if a.export:
        for name, model in [("simclr", net), ("random", random)]:
            export(model, os.path.join(a.export, name), a.size, a.validation)
            out[f"{name} max feature difference"] = verify_export(
                model, os.path.join(a.export, name), xte, a.selfsup)
        out["exported"] = a.export
        print(json.dumps(out))
        return
    for name, model in [("simclr", net), ("random init", random)]:
        (gtr, rtr), (gte, rte) = features(model, xtr), features(model, xte)
        out[name] = {"global": probe(gtr, ytr, gte, yte)}
        if not a.global_only:
            out[name]["3 blocks 3x3"] = probe(rtr, ytr, rte, yte)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
