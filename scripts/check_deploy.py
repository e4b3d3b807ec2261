"""Renders and checks deploy/: every kustomize overlay rendered with kubectl's
built-in kustomize, every rendered object validated (strictly: unknown fields
fail) against the schemas of the Kubernetes versions below, the Milvus Helm
values parsed, the Dockerfile linted with hadolint.

Run with the venv scripts/setup.sh deploy installs; prints the rendered
objects as JSON, {"overlay": [object, ...]}, for tests/tests/deploy_manifests.rs
to check against the binaries. Exits non-zero with the reasons on any failure.
"""

import json
import pathlib
import subprocess
import sys

import kubernetes_validate
import yaml

# The oldest Kubernetes the manifests claim (native gRPC probes are GA from
# 1.27) and the newest the validator knows.
VERSIONS = ["1.27.0", kubernetes_validate.latest_version()]

root = pathlib.Path(__file__).resolve().parent.parent
bindir = pathlib.Path(sys.executable).parent
problems = []
rendered = {}


def kn(o):
    return f"{o.get('kind')}/{o.get('metadata', {}).get('name')}"


for overlay in sorted((root / "deploy/k8s/overlays").iterdir()):
    out = subprocess.run(
        [bindir / "kubectl", "kustomize", overlay], capture_output=True, text=True
    )
    if out.returncode != 0:
        problems.append(f"{overlay.name}: kustomize failed: {out.stderr.strip()}")
        continue
    objects = [o for o in yaml.safe_load_all(out.stdout) if o]
    for o in objects:
        for v in VERSIONS:
            try:
                kubernetes_validate.validate(o, v, strict=True)
            except kubernetes_validate.ValidationError as e:
                where = "/".join(str(p) for p in e.path)
                problems.append(f"{overlay.name}: {kn(o)} (k8s {v}): {where}: {e.message}")
            except (kubernetes_validate.SchemaNotFoundError,
                    kubernetes_validate.InvalidSchemaError) as e:
                problems.append(f"{overlay.name}: {kn(o)} (k8s {v}): {e.message}")
    rendered[overlay.name] = objects

for values in sorted((root / "deploy/milvus").glob("*.yaml")):
    try:
        if not isinstance(yaml.safe_load(values.read_text()), dict):
            problems.append(f"{values.name}: not a mapping of Helm values")
    except yaml.YAMLError as e:
        problems.append(f"{values.name}: {e}")

lint = subprocess.run(
    [bindir / "hadolint", "--config", root / ".hadolint.yaml", "--no-color",
     root / "deploy/docker/Dockerfile"],
    capture_output=True, text=True,
)
if lint.returncode != 0:
    problems.append("hadolint:\n" + lint.stdout + lint.stderr)

if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
json.dump(rendered, sys.stdout)
