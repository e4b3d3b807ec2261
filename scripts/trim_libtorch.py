"""Trims a CUDA libtorch tree (scripts/libtorch.sh cuda) to the files the
embedder can load, and says what it removed and why.

The dynamic loader reaches a library in one of two ways: as a NEEDED entry of
an object already loaded, or by dlopen() of a name, which must then be
written somewhere in a loaded object. So starting from what the embedder
loads (libtorch_cpu.so and libc10.so linked, libtorch_cuda.so opened by
name), a library is kept when a kept object NEEDs it or holds its name
(any `NAME.so...` string with the same stem, so versioned and unversioned
spellings both count); the rest cannot be loaded and is removed, as are
headers, static archives, bitcode and Python files, which no loader reads.
The wheels' dist-info folders stay: they name each wheel's version and
licence.

    python3 trim_libtorch.py TREE      prints the report (TRIM.txt)
"""

import mmap
import os
import subprocess
import sys

# What the embedder binary loads itself (embedder/src/cuda.rs).
ROOTS = ["torch/lib/libtorch_cpu.so", "torch/lib/libc10.so", "torch/lib/libtorch_cuda.so"]
NAME_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")
VERSION_BYTES = frozenset(b"0123456789.")


def stem(name):
    """`libcudnn_cnn.so.9` -> `libcudnn_cnn.so`."""
    return name[: name.index(".so") + 3]


def is_shared_object(path):
    if ".so" not in os.path.basename(path):
        return False
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def needed(path):
    out = subprocess.run(["readelf", "-d", path], capture_output=True, text=True, check=True).stdout
    return [line.split("[", 1)[1].rstrip("]") for line in out.splitlines() if "(NEEDED)" in line]


def named(path):
    """Every `NAME.so[.N...]` string in the file."""
    found = set()
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        i = data.find(b".so")
        while i != -1:
            j = i
            while j > 0 and i - j < 128 and data[j - 1] in NAME_BYTES:
                j -= 1
            k = i + 3
            while k < len(data) and k - i < 32 and data[k] in VERSION_BYTES:
                k += 1
            if j < i:
                found.add(data[j:k].decode("ascii").rsplit("/", 1)[-1])
            i = data.find(b".so", i + 3)
    return found


def mb(n):
    return f"{n / 1e6:9.1f} MB"


def main(root):
    files = sorted(
        os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs
    )
    size = {f: os.path.getsize(os.path.join(root, f)) for f in files}
    libs = [f for f in files if is_shared_object(os.path.join(root, f))]
    by_name = {os.path.basename(f): f for f in libs}
    by_stem = {}
    for f in libs:
        by_stem.setdefault(stem(os.path.basename(f)), []).append(f)

    why = {r: "loaded by the embedder" for r in ROOTS}
    kept, queue = set(), list(ROOTS)
    while queue:
        lib = queue.pop()
        if lib in kept:
            continue
        kept.add(lib)
        path, base = os.path.join(root, lib), os.path.basename(lib)
        reached = [(by_name.get(n), f"NEEDED by {base}") for n in needed(path)]
        for name in named(path):
            reached += [(f, f"named in {base}") for f in by_stem.get(stem(name), [])]
        for f, reason in reached:
            if f and f not in kept and f not in queue:
                why[f] = reason
                queue.append(f)

    def reason(f):
        if ".dist-info/" in f:
            return None
        if f in kept:
            return None
        if f in libs:
            return "shared object neither NEEDED by nor named in any kept library"
        return "not a shared object (header, static archive, bitcode, Python)"

    removed = [(f, reason(f)) for f in files if reason(f)]
    for f, _ in removed:
        os.remove(os.path.join(root, f))
    for d, _, _ in os.walk(root, topdown=False):
        if d != root and not os.listdir(d):
            os.rmdir(d)

    before, gone = sum(size.values()), sum(size[f] for f, _ in removed)
    print(f"# libtorch CUDA tree: {mb(before)} as extracted, {mb(before - gone)} kept")
    print(f"\n## Kept: {len(kept)} libraries, {mb(sum(size[f] for f in kept))}")
    for f in sorted(kept, key=lambda f: -size[f]):
        print(f"{mb(size[f])}  {f}  ({why[f]})")
    print(f"\n## Removed: {len(removed)} files, {mb(gone)}")
    unloadable = [f for f, r in removed if r.startswith("shared")]
    for f in sorted(unloadable, key=lambda f: -size[f]):
        print(f"{mb(size[f])}  {f}  (neither NEEDED by nor named in a kept library)")
    rest = [f for f, r in removed if not r.startswith("shared")]
    print(f"{mb(sum(size[f] for f in rest))}  {len(rest)} headers, static archives, bitcode "
          "and Python files (no loader reads them)")


if __name__ == "__main__":
    main(sys.argv[1])
