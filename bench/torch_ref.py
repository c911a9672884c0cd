"""The PyTorch side of `selfsup bench`: the same workloads with PyTorch, torchvision and lightly
(when installed; this script installs nothing). `selfsup bench` runs it once per workload and
repetition, alternating with its own runs, and reads the one JSON line it prints.

    python3 bench/torch_ref.py WORKLOAD --images FILE.npy [--threads 2] [--steps 5] ...

Workloads (the same shapes as the Rust side):
  step-convnet   SimCLR steps (forward, backward, SGD) of the 4-block ConvNet at 28 px, 1 channel
  step-resnet18  the same with a CIFAR ResNet-18 at 32 px, 3 channels
  step-mae       MAE steps (forward, backward, AdamW) of a ViT-Tiny (patch 4, 12 pre-norm
                 blocks of 192-wide tokens, 3 heads, exact GELU) at 28 px, 1 channel, 75 % of
                 the 49 patches masked, a 2-block 128-wide decoder, normalized-pixel loss
  views          two SimCLR views per image (crop, flip, colour jitter, grayscale, blur) through a
                 DataLoader with `--threads` workers (give RGB images for every colour operation)
  epoch          one SimCLR epoch end to end: DataLoader with the views (`--threads` workers
                 beside the training process), ConvNet, NT-Xent, SGD
  knn            weighted k-NN (k=200, T=0.07) of 10,000 x 60,000 random 512-d features
Each prints {"workload", "value", "unit", "peak_rss_mb", "lightly": bool}.
"""
import argparse
import json
import resource
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

try:
    import lightly  # noqa: F401
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead
    from lightly.transforms import SimCLRTransform

    HAVE_LIGHTLY = True
except ImportError:  # plain torchvision
    HAVE_LIGHTLY = False


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class ConvNet(nn.Module):
    """selfsup's ConvNet: conv3x3-BN-ReLU x4, widths 32-64-128-256, first conv stride 2,
    2x2 max-pool after blocks 2 and 3, global average pool."""

    def __init__(self, cin):
        super().__init__()
        layers, c = [], cin
        for i, w in enumerate([32, 64, 128, 256]):
            layers += [nn.Conv2d(c, w, 3, stride=2 if i == 0 else 1, padding=1, bias=False),
                       nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            if i in (1, 2):
                layers.append(nn.MaxPool2d(2))
            c = w
        self.features = nn.Sequential(*layers)
        self.dim = 256

    def forward(self, x):
        return self.features(x).mean(dim=(2, 3))


def cifar_resnet18():
    import torchvision

    m = torchvision.models.resnet18(num_classes=10)
    m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    m.maxpool = nn.Identity()
    m.fc = nn.Identity()
    m.dim = 512
    return m


def projection(dim):
    if HAVE_LIGHTLY:
        # Linear(no bias) -> BN -> ReLU -> Linear, as selfsup's head.
        return SimCLRProjectionHead(dim, 512, 128, num_layers=2, batch_norm=True)
    return nn.Sequential(nn.Linear(dim, 512, bias=False), nn.BatchNorm1d(512), nn.ReLU(),
                         nn.Linear(512, 128))


def nt_xent(z1, z2, t=0.2):
    if HAVE_LIGHTLY:
        return NTXentLoss(temperature=t)(z1, z2)
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    s = z @ z.t() / t
    s.fill_diagonal_(float("-inf"))
    b = z1.shape[0]
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)])
    return F.cross_entropy(s, target)


def train_steps(backbone, side, channels, batch, steps):
    head = projection(backbone.dim)
    params = list(backbone.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=0.06, momentum=0.9, weight_decay=5e-4)
    x1 = torch.randn(batch, channels, side, side)
    x2 = torch.randn(batch, channels, side, side)

    def step():
        z = head(backbone(torch.cat([x1, x2])))
        loss = nt_xent(z[:batch], z[batch:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return timed(step, batch, steps)


def timed(step, batch, steps):
    """Images per second of `steps` calls of `step` after one warm-up call."""
    step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - t)


def blocks(dim, depth, heads):
    """Pre-norm transformer blocks (self-attention, then a GELU MLP 4x wide), as selfsup's."""
    return nn.ModuleList([
        nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, activation="gelu",
                                   batch_first=True, norm_first=True) for _ in range(depth)])


def grid_pos(pos, g):
    """A `[1, D, G, G]` position embedding on a `g` x `g` grid, as `[1, g * g, D]`."""
    if pos.shape[-1] != g:
        pos = F.interpolate(pos, size=(g, g), mode="bilinear", align_corners=False)
    return pos.flatten(2).transpose(1, 2)


class Mae(nn.Module):
    """selfsup's MAE: ViT-Tiny encoder on the visible quarter of the patches, light decoder."""

    def __init__(self, cin=1, patch=4, dim=192, depth=12, heads=3, ddim=128, ddepth=2, dheads=4):
        super().__init__()
        self.patch = patch
        self.embed = nn.Conv2d(cin, dim, patch, stride=patch)
        self.pos = nn.Parameter(torch.randn(1, dim, 8, 8) * 0.02)  # learned for 32 px
        self.blocks, self.norm = blocks(dim, depth, heads), nn.LayerNorm(dim)
        self.dembed = nn.Linear(dim, ddim)
        self.mask_token = nn.Parameter(torch.randn(1, 1, ddim) * 0.02)
        self.dpos = nn.Parameter(torch.randn(1, ddim, 8, 8) * 0.02)
        self.dblocks, self.dnorm = blocks(ddim, ddepth, dheads), nn.LayerNorm(ddim)
        self.pred = nn.Linear(ddim, patch * patch * cin)

    def forward(self, x, mask_ratio=0.75):
        e = self.embed(x)
        b, d, g, _ = e.shape
        tokens = e.flatten(2).transpose(1, 2) + grid_pos(self.pos, g)
        n = g * g
        keep = round(n * (1 - mask_ratio))
        order = torch.rand(b, n).argsort(dim=1)
        restore = order.argsort(dim=1)
        visible = order[:, :keep]
        y = tokens.gather(1, visible[..., None].expand(-1, -1, d))
        for blk in self.blocks:
            y = blk(y)
        y = self.dembed(self.norm(y))
        dd = y.shape[-1]
        y = torch.cat([y, self.mask_token.expand(b, n - keep, dd)], dim=1)
        y = y.gather(1, restore[..., None].expand(-1, -1, dd)) + grid_pos(self.dpos, g)
        for blk in self.dblocks:
            y = blk(y)
        pred = self.pred(self.dnorm(y))
        p = self.patch
        target = x.reshape(b, x.shape[1], g, p, g, p).permute(0, 2, 4, 3, 5, 1).reshape(b, n, -1)
        mean, var = target.mean(-1, keepdim=True), target.var(-1, unbiased=False, keepdim=True)
        target = (target - mean) / (var + 1e-6).sqrt()
        mask = (restore >= keep).float()
        return (((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum()


def mae_steps(batch, steps):
    model = Mae()
    opt = torch.optim.AdamW(model.parameters(), lr=1.5e-4, weight_decay=0.05)
    x = torch.rand(batch, 1, 28, 28) * 2 - 1

    def step():
        loss = model(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return timed(step, batch, steps)


def view_transform(side, channels):
    """Two SimCLR views: crop (0.2-1), flip, jitter 0.8 x (0.4, 0.4, 0.4, 0.1), grayscale 0.2,
    blur 0.5 (sigma 0.1-2), normalize."""
    import torchvision.transforms as T

    if HAVE_LIGHTLY:
        one = SimCLRTransform(input_size=side, cj_prob=0.8, cj_strength=0.5, cj_bright=0.8,
                              cj_contrast=0.8, cj_sat=0.8, cj_hue=0.2, min_scale=0.2,
                              random_gray_scale=0.2, gaussian_blur=0.5, sigmas=(0.1, 2.0),
                              vf_prob=0.0, hf_prob=0.5, rr_prob=0.0,
                              normalize={"mean": [0.5] * channels, "std": [0.5] * channels})
        return one
    k = 2 * int(np.ceil(3 * 2.0)) + 1
    one = T.Compose([
        T.RandomResizedCrop(side, scale=(0.2, 1.0)),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(0.2),
        T.RandomApply([T.GaussianBlur(k, sigma=(0.1, 2.0))], p=0.5),
        T.ToTensor(),
        T.Normalize([0.5] * channels, [0.5] * channels),
    ])
    return lambda img: [one(img), one(img)]


class Images(torch.utils.data.Dataset):
    """uint8 images [N, C, H, W] as PIL images (grey or RGB), through `transform`."""

    def __init__(self, arr, transform):
        from PIL import Image

        self.arr, self.transform, self.Image = arr, transform, Image

    def __len__(self):
        return len(self.arr)

    def __getitem__(self, i):
        a = self.arr[i]
        img = self.Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0))
        v = self.transform(img)
        return v[0], v[1]


def loader(arr, batch, workers):
    side = arr.shape[2]
    ds = Images(arr, view_transform(side, arr.shape[1]))
    return torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, drop_last=True,
                                       num_workers=workers, persistent_workers=False)


def views(arr, batch, workers):
    dl = loader(arr, batch, workers)
    t = time.perf_counter()
    n = 0
    for v1, _ in dl:
        n += v1.shape[0]
    return n / (time.perf_counter() - t)


def epoch(arr, batch, workers):
    dl = loader(arr, batch, workers)
    backbone = ConvNet(arr.shape[1])
    head = projection(backbone.dim)
    params = list(backbone.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=0.06, momentum=0.9, weight_decay=5e-4)
    t = time.perf_counter()
    for v1, v2 in dl:
        b = v1.shape[0]
        z = head(backbone(torch.cat([v1, v2])))
        loss = nt_xent(z[:b], z[b:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t


def knn(n_train=60000, n_test=10000, dim=512, k=200, t=0.07, classes=10):
    g = torch.Generator().manual_seed(0)
    train = F.normalize(torch.randn(n_train, dim, generator=g), dim=1)
    test = F.normalize(torch.randn(n_test, dim, generator=g), dim=1)
    labels = torch.randint(0, classes, (n_train,), generator=g)
    start = time.perf_counter()
    preds = []
    for i in range(0, n_test, 1000):
        sim = test[i:i + 1000] @ train.t()
        w, idx = sim.topk(k, dim=1)
        votes = torch.zeros(sim.shape[0], classes).scatter_add_(1, labels[idx], (w / t).exp())
        preds.append(votes.argmax(1))
    torch.cat(preds)
    return time.perf_counter() - start


def main():
    p = argparse.ArgumentParser()
    p.add_argument("workload")
    p.add_argument("--images", help=".npy of uint8 images [N, C, H, W] (views, epoch)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--batch", type=int, default=256)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    w = a.workload
    if w == "step-convnet":
        value, unit = train_steps(ConvNet(1), 28, 1, a.batch, a.steps), "images/s"
    elif w == "step-resnet18":
        value, unit = train_steps(cifar_resnet18(), 32, 3, a.batch, a.steps), "images/s"
    elif w == "step-mae":
        value, unit = mae_steps(a.batch, a.steps), "images/s"
    elif w == "views":
        value, unit = views(np.load(a.images), a.batch, a.threads), "images/s"
    elif w == "epoch":
        # The main process trains with `threads` threads; the workers make views beside it.
        value, unit = epoch(np.load(a.images), a.batch, a.threads), "s"
    elif w == "knn":
        value, unit = knn(), "s"
    else:
        raise SystemExit(f"unknown workload {w}")
    print(json.dumps({"workload": w, "value": value, "unit": unit, "peak_rss_mb": peak_rss_mb(),
                      "lightly": HAVE_LIGHTLY, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
