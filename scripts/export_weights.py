"""Writes a torchvision ResNet50 state_dict as safetensors, for the embedder.

    export_weights.py --imagenet --out resnet50.safetensors   # the tutorial's weights
    export_weights.py --seed 0 --out resnet50-seed0.safetensors  # test weights

--imagenet gives IMAGENET1K_V1, the weights the tutorial's
torch.hub.load('pytorch/vision:v0.10.0', 'resnet50', pretrained=True) loads;
torchvision downloads them, so it needs the internet (exit code 3 without).

--seed gives seeded random weights for tests, where no download is possible.
Batch-norm is made a real, non-identity transform: random affine parameters
and running statistics measured on random images (so activations keep a sane
scale through all 50 layers and parity tests compare meaningful numbers).

Either way the file holds torchvision's parameter names unchanged; the
embedder loads both through the same code path.
"""
import argparse
import sys

import torch
import torchvision
from safetensors.torch import save_file


def seeded_model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torchvision.models.resnet50(weights=None)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in bns:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0.0, 0.1)
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the calibration batches
        model.train()
        for _ in range(4):
            model(torch.randn(8, 3, 224, 224))
    model.eval()
    return model


def imagenet_model() -> torch.nn.Module:
    weights = torchvision.models.ResNet50_Weights.IMAGENET1K_V1
    try:
        return torchvision.models.resnet50(weights=weights).eval()
    except Exception as exc:  # network errors come in many types
        print(f"cannot download IMAGENET1K_V1 weights: {exc}", file=sys.stderr)
        sys.exit(3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--imagenet", action="store_true", help="torchvision IMAGENET1K_V1")
    source.add_argument("--seed", type=int, help="seeded random weights for tests")
    parser.add_argument("--out", required=True, help="output .safetensors path")
    args = parser.parse_args()

    model = imagenet_model() if args.imagenet else seeded_model(args.seed)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, args.out)
    print(f"wrote {len(state)} tensors to {args.out}")


if __name__ == "__main__":
    main()
