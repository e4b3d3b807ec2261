"""Squared L2 distances between photos and their near-copies, for choosing
FindDuplicates' max_distance for a model's weights.

    .deps/venv-ref/bin/python scripts/duplicate_distances.py --weights W FILE...

For each photo it makes three copies with PIL, as a catalogue gets them:
re-encoded as JPEG at quality 70, resized to 50 % (bilinear), and cropped
by 5 % (2.5 % off each side). It embeds originals and copies with the
tutorial's pipeline (scripts/torch_reference.py, which imgsearch's vectors
match) and prints, as a Markdown table, the distribution of the distance
from each original to each of its copies and between every two distinct
originals, then the widest max_distance that groups each kind of copy
without grouping any two distinct photos, when there is one. --json prints
the same as JSON.

Distances depend on the weights: run it with the weights your embedders
load, on photos like yours.
"""
import argparse
import io
import itertools
import json

import torch
from PIL import Image

from torch_reference import PREPROCESS, embed, load_model

COPIES = {
    "JPEG quality 70": lambda im: Image.open(jpeg(im, 70)).convert("RGB"),
    "resized to 50 %": lambda im: im.resize((max(1, im.width // 2), max(1, im.height // 2)),
                                          Image.BILINEAR),
    "cropped by 5 %": lambda im: im.crop((round(im.width * 0.025), round(im.height * 0.025),
                                          round(im.width * 0.975), round(im.height * 0.975))),
}


def jpeg(im: Image.Image, quality: int) -> io.BytesIO:
    out = io.BytesIO()
    im.save(out, "JPEG", quality=quality)
    out.seek(0)
    return out


def stats(values: list) -> dict:
    v = sorted(values)
    at = lambda q: v[min(len(v) - 1, int(q * (len(v) - 1) + 0.5))]
    return {"n": len(v), "min": v[0], "p5": at(0.05), "median": at(0.5), "p95": at(0.95),
            "max": v[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = load_model(args.weights)
    vec = lambda im: embed(model, PREPROCESS(im).unsqueeze(0))[0]
    originals, copies = [], {k: [] for k in COPIES}
    for f in args.files:
        im = Image.open(f).convert("RGB")
        originals.append(vec(im))
        for kind, make in COPIES.items():
            copies[kind].append(vec(make(im)))
    sq = lambda a, b: float(((a - b) ** 2).sum())
    table = {kind: stats([sq(o, c) for o, c in zip(originals, cs)]) for kind, cs in copies.items()}
    table["distinct photos"] = stats([sq(a, b) for a, b in itertools.combinations(originals, 2)])
    closest = table["distinct photos"]["min"]
    advice = {kind: (s["max"] < closest) for kind, s in table.items() if kind in COPIES}
    if args.json:
        print(json.dumps({"photos": len(args.files), "distances": table, "separable": advice,
                          "widest_max_distance": closest}))
        return
    print(f"Squared L2 distances over {len(args.files)} photos:\n")
    print("| pair | n | min | p5 | median | p95 | max |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for kind, s in table.items():
        cells = " | ".join(f"{s[k]:,.0f}" if s[k] >= 100 else f"{s[k]:.3g}"
                           for k in ("min", "p5", "median", "p95", "max"))
        print(f"| {'original vs ' if kind in COPIES else ''}{kind} | {s['n']} | {cells} |")
    print()
    for kind, ok in advice.items():
        if ok:
            print(f"- {kind}: every copy is nearer than the closest distinct pair "
                  f"({table[kind]['max']:,.0f} < {closest:,.0f}); a max_distance between them "
                  f"groups them all and no two of these photos.")
        else:
            print(f"- {kind}: some copies lie farther than the closest distinct pair "
                  f"({table[kind]['max']:,.0f} >= {closest:,.0f}); no max_distance groups all "
                  f"of them without grouping distinct photos.")


if __name__ == "__main__":
    main()
