"""Loads a selfsup ResNet checkpoint into torchvision's resnet18 / resnet50 as it is and checks
that torchvision computes the features `selfsup embed` wrote. Needs torch, torchvision, numpy,
Pillow and safetensors. From the project root:

    cargo run --release -- pretrain --method simclr --backbone resnet18 --imagenet-stem \
        --data folder:../shared/data/cifar10-samples --image-size 32 --epochs 2 \
        --batch-size 16 --out runs/r18
    cargo run --release -- embed --checkpoint runs/r18/last.safetensors --split train \
        --out runs/r18/features.npy
    python3 bench/torchvision_check.py runs/r18/last.safetensors runs/r18/features.npy

The images must already be `folder_side` pixels square (the check feeds them to torchvision
unresized; selfsup's resize is not Pillow's). Exits non-zero when a key is missing or
unexpected, or a feature differs by more than 1e-4.
"""
import pathlib
import sys
import tomllib

import numpy as np
import torch
import torchvision
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

checkpoint, features = map(pathlib.Path, sys.argv[1:3])
config = tomllib.loads((checkpoint.parent / "config.toml").read_text())
kind = config["backbone"]["kind"]
state = load_file(str(checkpoint))
# The backbone's tensors sit under the prefix the metadata names ("backbone." for most
# methods; BYOL's online network is "online.backbone.").
with safe_open(str(checkpoint), "pt") as f:
    prefix = (f.metadata() or {}).get("backbone_prefix", "backbone.")
backbone = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}

model = getattr(torchvision.models, kind)(weights=None)
if backbone["conv1.weight"].shape[-1] == 3:
    # selfsup's CIFAR stem: a 3x3 stride-1 conv1 and no max-pool.
    model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    model.maxpool = torch.nn.Identity()
result = model.load_state_dict(backbone, strict=False)
print(f"{kind}: {len(backbone)} backbone tensors; missing {result.missing_keys}, "
      f"unexpected {result.unexpected_keys}")
ok = not result.unexpected_keys and set(result.missing_keys) <= {"fc.weight", "fc.bias"}
model.fc = torch.nn.Identity()
model.eval()

side = config["folder_side"]
mean = torch.tensor(config["views"]["mean"]).view(1, -1, 1, 1)
std = torch.tensor(config["views"]["std"]).view(1, -1, 1, 1)
paths = features.with_suffix(".paths.txt").read_text().splitlines()
images = []
for p in paths:
    img = Image.open(p).convert("RGB")
    if img.size != (side, side):
        sys.exit(f"{p} is {img.size[0]}x{img.size[1]}, not {side}x{side}: use images of that size")
    images.append(np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0)
x = (torch.from_numpy(np.stack(images)) - mean) / std
with torch.no_grad():
    ours = torch.from_numpy(np.load(features))
    theirs = model(x)
diff = (ours - theirs).abs().max().item()
print(f"{len(paths)} images, {theirs.shape[1]} features: max |selfsup - torchvision| = {diff:.2e}")
ok &= diff <= 1e-4
sys.exit(0 if ok else 1)
