#!/usr/bin/env bash
# Decode and preprocessing, one thread, no model: each stage of the tutorial's
# pipeline (PIL + torchvision), of the same with PIL's JPEG draft mode, and of
# the embedder's exact and fast modes, in one run, on the same files: the
# demo corpus (273 × 720x360 JPEGs) and 24 larger photos (1280x1024 to
# 5120x2880, six progressive). Then how far fast vectors are from exact ones
# over both sets (seeded weights): cosine distribution and top-3 agreement.
# Prints Markdown tables.
#
#   scripts/bench_preprocess.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh system libtorch pyref weights corpus photos >/dev/null
rounds=${1:-3}
demo=("$PWD"/.deps/corpus/endless-sky/*.jpg)
photos=("$PWD"/.deps/corpus/photos/*.jpg)
bench() { cargo bench -q --locked -p imgsearch-embedder --bench "$@" 2>/dev/null | tail -1; }
cargo bench --locked -p imgsearch-embedder --no-run 2>&1 | tail -1 >&2

declare -A results
for set in demo photos; do
  declare -n files=$set
  echo "$set: PIL + torchvision..." >&2
  results[$set-pil]=$(.deps/venv-ref/bin/python scripts/torch_reference.py stages --rounds "$rounds" "${files[@]}")
  echo "$set: imgsearch exact and fast..." >&2
  results[$set-ours]=$(bench preprocess_stages -- --rounds "$rounds" "${files[@]}")
done
echo "fast vs exact vectors..." >&2
# Indexed: 270 demo photos and 21 large ones; held back: the last 3 of each.
agreement=$(bench fast_mode_agreement -- "$PWD/.deps/weights/resnet50-seed0.safetensors" 6 \
  "${demo[@]:0:270}" "${photos[@]:0:21}" "${demo[@]:270}" "${photos[@]:21}")

echo
echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), one thread, $rounds rounds, $(date -u +%F)"
python3 - "${results[demo-pil]}" "${results[demo-ours]}" "${results[photos-pil]}" "${results[photos-ours]}" "$agreement" <<'PY'
import json, sys
demo_pil, demo_ours, photos_pil, photos_ours, agreement = map(json.loads, sys.argv[1:])

def rows(pil, ours):
    """Per pipeline: decode, convert, resize, crop, tensor + normalise, total (ms)."""
    out = {}
    for name in ("pil", "pil_draft"):
        p = pil[name]
        out[name] = [p["decode"], p["convert"], p["resize"], p["crop"],
                     p["to_tensor"] + p["normalize"], p["total"]]
    for name in ("exact", "fast"):
        o = ours[name]
        out[name] = [o["probe"] + o["decode"], None, o["resize_crop"], None, o["tensor"], o["total"]]
    return out

sets = {"demo corpus": (demo_pil["images"], rows(demo_pil, demo_ours)),
        "24 photos": (photos_pil["images"], rows(photos_pil, photos_ours))}
both = sum(n for n, _ in sets.values())
sets["both"] = (both, {k: [None] * 5 + [sum(n * r[k][5] for n, r in sets.values()) / both]
                       for k in ("pil", "pil_draft", "exact", "fast")})
label = {"pil": "PIL + torchvision (tutorial)", "pil_draft": "PIL draft + torchvision",
         "exact": "imgsearch exact", "fast": "imgsearch fast"}
cell = lambda v: "" if v is None else f"{v:.2f}"
print("\n| images | pipeline | decode | convert | resize | crop | tensor + normalise | total ms | images/s per core | vs PIL |")
print("|---|---|---|---|---|---|---|---|---|---|")
for set_name, (n, r) in sets.items():
    base = r["pil"][5]
    for k, v in r.items():
        print(f"| {set_name} ({n}) | {label[k]} | " + " | ".join(cell(x) for x in v[:5])
              + f" | {v[5]:.2f} | {1000 / v[5]:.0f} | {base / v[5]:.2f}x |")
c, a = agreement["cosine"], agreement["top3_agreement"]
print(f"\nFast vs exact, {agreement['images']} images ({agreement['scaled_by_fast']} decoded at a reduced scale), seeded weights:")
print("\n| cosine min | p1 | p5 | median | mean | top-3 agreement, self-search | top-3 agreement, held back |")
print("|---|---|---|---|---|---|---|")
print(f"| {c['min']:.4f} | {c['p1']:.4f} | {c['p5']:.4f} | {c['p50']:.6f} | {c['mean']:.6f} | {a['self']:.1%} | {a['held_back']:.1%} |")
PY
