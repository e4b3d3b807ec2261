"""The tutorial's PyTorch pipeline, as a reference for parity tests.

    torch_reference.py tensor --weights W --input in.safetensors --output out.safetensors
        runs ResNet50 minus fc on the tensor named "input" ([N,3,224,224]) and
        writes "output" ([N,2048]).
    torch_reference.py variants --out DIR FILE...
        writes odd-format copies of each file with PIL: RGBA PNG with varying
        alpha, grayscale JPEG and PNG, CMYK JPEG, 16-bit grayscale PNG,
        palette PNG, gray+alpha PNG, and a 1x1 PNG; prints their paths.
    torch_reference.py bench --weights W --batch B FILE...
        times the tutorial's loop (PIL preprocessing, torch.stack, model) in
        batches of B over the files after one warm-up batch; prints a JSON line
        with images/s and peak RSS.
    torch_reference.py hostile --weights W FILE...
        runs the tutorial on each file alone, counting the ones PIL or torch
        refuses instead of stopping there; prints a JSON line with the
        seconds, the errors and peak RSS.
    torch_reference.py images --weights W --output out.safetensors FILE...
        runs the tutorial end to end on each file (PIL open + convert('RGB'),
        Resize(256), CenterCrop(224), ToTensor, Normalize, the model) and writes
        "output" ([N,2048]) and "input" (the preprocessed [N,3,224,224]).
    torch_reference.py stages [--rounds R] FILE...
        times each preprocessing stage alone on one thread, no model, files
        read into memory first: decode (open + load), convert('RGB'),
        Resize(256), CenterCrop(224), ToTensor, Normalize; for the tutorial's
        pipeline ("pil") and the same with JPEG draft mode ("pil_draft":
        libjpeg's DCT scaling to the smallest of 1/8, 1/4, 1/2 that keeps both
        sides >= 256). Prints a JSON line of mean milliseconds per image.

The model is torchvision's resnet50 with the fc layer removed exactly as the
tutorial does it: torch.nn.Sequential(*(list(model.children())[:-1])).
"""
import argparse

import torch
import torchvision
from PIL import Image
from safetensors.torch import load_file, save_file
from torchvision import transforms

PREPROCESS = transforms.Compose([
    transforms.Resize(256),
    transforms.CenterCrop(224),
    transforms.ToTensor(),
    transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
])


def load_model(weights: str) -> torch.nn.Module:
    model = torchvision.models.resnet50(weights=None)
    model.load_state_dict(load_file(weights))
    model = torch.nn.Sequential(*(list(model.children())[:-1]))
    return model.eval()


def embed(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.flatten(model(batch), start_dim=1).contiguous()


def variants(out_dir: str, files: list) -> None:
    import os
    for f in files:
        stem = os.path.splitext(os.path.basename(f))[0]
        im = Image.open(f).convert("RGB")
        w, h = im.size
        alpha = Image.linear_gradient("L").resize((w, h))
        rgba = im.copy()
        rgba.putalpha(alpha)
        made = {
            "rgba.png": rgba,
            "gray.jpg": im.convert("L"),
            "gray.png": im.convert("L"),
            "cmyk.jpg": im.convert("CMYK"),
            "pal.png": im.convert("P"),
            "la.png": rgba.convert("LA"),
        }
        for suffix, img in made.items():
            path = os.path.join(out_dir, f"{stem}.{suffix}")
            img.save(path, quality=90) if suffix.endswith("jpg") else img.save(path)
            print(path)
        g16 = Image.fromarray((__import__("numpy").asarray(im.convert("L"), dtype="uint16") * 3).astype("uint16"))
        path = os.path.join(out_dir, f"{stem}.gray16.png")
        g16.save(path)
        print(path)
    path = os.path.join(out_dir, "tiny.1x1.png")
    Image.new("RGB", (1, 1), (200, 30, 90)).save(path)
    print(path)


def bench(model: torch.nn.Module, batch: int, files: list) -> None:
    import json, resource, time

    def run(paths):
        for i in range(0, len(paths), batch):
            data = [PREPROCESS(Image.open(p).convert("RGB")) for p in paths[i:i + batch]]
            embed(model, torch.stack(data))

    run(files[:batch])
    start = time.perf_counter()
    run(files)
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"images": len(files), "seconds": round(seconds, 3),
                      "images_per_s": round(len(files) / seconds, 2), "peak_rss_bytes": rss}))


def hostile(model: torch.nn.Module, files: list) -> None:
    import json, resource, time

    start = time.perf_counter()
    errors = 0
    for f in files:
        try:
            embed(model, PREPROCESS(Image.open(f).convert("RGB")).unsqueeze(0))
        except Exception:  # what PIL refuses is an error for this file only
            errors += 1
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"images": len(files), "errors": errors, "seconds": round(seconds, 3),
                      "peak_rss_bytes": rss}))


def stages(files: list, rounds: int) -> None:
    import io, json, time

    torch.set_num_threads(1)
    steps = [("convert", lambda im: im.convert("RGB")), ("resize", transforms.Resize(256)),
             ("crop", transforms.CenterCrop(224)), ("to_tensor", transforms.ToTensor()),
             ("normalize", PREPROCESS.transforms[-1])]
    blobs = [open(f, "rb").read() for f in files]

    def load(blob, draft):
        im = Image.open(io.BytesIO(blob))
        if draft:
            im.draft("RGB", (256, 256))
        im.load()
        return im

    out = {}
    for name, draft in (("pil", False), ("pil_draft", True)):
        total = dict.fromkeys(["decode"] + [s for s, _ in steps], 0.0)
        for _ in range(rounds):
            for blob in blobs:
                start = time.perf_counter()
                x = load(blob, draft)
                for stage, f in [(None, None)] + steps:
                    if stage:
                        x = f(x)
                    now = time.perf_counter()
                    total[stage or "decode"] += now - start
                    start = now
        n = rounds * len(blobs)
        out[name] = {k: round(v * 1000 / n, 4) for k, v in total.items()}
        out[name]["total"] = round(sum(total.values()) * 1000 / n, 4)
    print(json.dumps(out | {"images": len(blobs)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    t = sub.add_parser("tensor")
    t.add_argument("--input", required=True)
    i = sub.add_parser("images")
    i.add_argument("files", nargs="+")
    v = sub.add_parser("variants")
    v.add_argument("--out", required=True)
    v.add_argument("files", nargs="+")
    b = sub.add_parser("bench")
    b.add_argument("--batch", type=int, default=8)
    b.add_argument("files", nargs="+")
    h = sub.add_parser("hostile")
    h.add_argument("files", nargs="+")
    s = sub.add_parser("stages")
    s.add_argument("--rounds", type=int, default=1)
    s.add_argument("files", nargs="+")
    for p in (t, i):
        p.add_argument("--output", required=True)
    for p in (t, i, b, h):
        p.add_argument("--weights", required=True)
    args = parser.parse_args()
    if args.mode == "variants":
        variants(args.out, args.files)
        return
    if args.mode == "stages":
        stages(args.files, args.rounds)
        return

    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = load_model(args.weights)
    if args.mode == "bench":
        bench(model, args.batch, args.files)
        return
    if args.mode == "hostile":
        hostile(model, args.files)
        return
    if args.mode == "tensor":
        batch = load_file(args.input)["input"]
    else:
        batch = torch.stack([PREPROCESS(Image.open(f).convert("RGB")) for f in args.files])
    save_file({"input": batch.contiguous(), "output": embed(model, batch)}, args.output)


if __name__ == "__main__":
    main()
