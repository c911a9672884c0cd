"""Writes torchvision's ResNet-18 and ResNet-50 state-dict keys, with shapes and dtypes, to
tests/data/torchvision/{resnet18,resnet50}.txt: the names selfsup's checkpoints must carry
(tests/it/nets.rs checks them). Needs torch and torchvision; run from the project root:

    python3 bench/torchvision_keys.py
"""
import pathlib

import torch
import torchvision

out = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data" / "torchvision"
out.mkdir(parents=True, exist_ok=True)
for name in ["resnet18", "resnet50"]:
    model = getattr(torchvision.models, name)(weights=None)
    lines = [
        f"{k} {str(v.dtype).removeprefix('torch.')} {list(v.shape)}"
        for k, v in model.state_dict().items()
    ]
    header = f"# torchvision {torchvision.__version__} {name}().state_dict(): name dtype shape"
    (out / f"{name}.txt").write_text("\n".join([header, *lines]) + "\n")
    print(f"{name}: {len(lines)} keys -> {out / (name + '.txt')}")
