"""Renders and checks deploy/: every kustomize overlay rendered with kubectl's
built-in kustomize, every rendered object validated (strictly: unknown fields
fail) against the schemas of the Kubernetes versions below, the Milvus Helm
values parsed, the Dockerfile linted with hadolint; and the security rules:
TLS on every hop, secrets only as mounted files, network policies closed by
default, a cert-manager Certificate for every certificate Secret mounted,
Milvus's TLS and authorization on.

Run with the venv scripts/setup.sh deploy installs; prints the rendered
objects as JSON, {"overlay": [object, ...]}, for tests/tests/suite/deploy_manifests.rs
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
secrets_used = set()


def kn(o):
    return f"{o.get('kind')}/{o.get('metadata', {}).get('name')}"


# --- Security: TLS on every hop, secrets only as files, least reach. ---

SECRET_WORDS = ("PASSWORD", "TOKEN", "API_KEY")


def container(objects, deployment):
    for o in objects:
        if o["kind"] == "Deployment" and o["metadata"]["name"] == deployment:
            return o["spec"]["template"]["spec"], o["spec"]["template"]["spec"]["containers"][0]
    raise KeyError(deployment)


def config(objects, name):
    for o in objects:
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith(name + "-"):
            return o["data"]
    raise KeyError(name)


def secret_mounts(pod, c):
    """mountPath -> Secret name, for the container's Secret volumes."""
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}
    return {m["mountPath"]: secrets[m["name"]] for m in c.get("volumeMounts", []) if m["name"] in secrets}


def check_security(overlay, objects):
    out = []
    secrets_used = set()
    for deployment in ("gateway", "embedder"):
        pod, c = container(objects, deployment)
        env = config(objects, f"{deployment}-config")
        mounts = secret_mounts(pod, c)
        secrets_used.update(mounts.values())
        if c.get("args") or c.get("command"):
            out.append(f"{deployment}: flags on the command line; use env twins and files")
        if any("subPath" in m for m in c.get("volumeMounts", [])):
            out.append(f"{deployment}: a subPath mount never sees a renewed Secret")
        if c.get("env"):
            out.append(f"{deployment}: inline env; secrets belong in files, config in the ConfigMap")
        for ref in c.get("envFrom", []):
            if "secretRef" in ref:
                out.append(f"{deployment}: secrets as env vars ({ref['secretRef']['name']}); mount them as files")
        for key, value in env.items():
            if any(w in key for w in SECRET_WORDS) and not key.endswith("_FILE"):
                out.append(f"{deployment}: {key} holds a secret in a ConfigMap; use its _FILE twin")
            if key.endswith(("_FILE", "_CERT", "_KEY", "_CA")):
                if not any(value.startswith(m + "/") for m in mounts):
                    out.append(f"{deployment}: {key}={value} is not in a Secret mount")
        for key in ("IMGSEARCH_SERVER_TLS_CERT", "IMGSEARCH_SERVER_TLS_KEY"):
            if key not in env:
                out.append(f"{deployment}: no {key}: its gRPC port is plaintext")
        probe_port = next((p["containerPort"] for p in c["ports"] if p["name"] == "probe"), None)
        listen = env.get(f"IMGSEARCH_{deployment.upper()}_PROBE_LISTEN", "")
        if probe_port is None or not listen.endswith(f":{probe_port}"):
            out.append(f"{deployment}: probes need the plaintext probe port (PROBE_LISTEN) as container port 'probe'")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if probe in c and c[probe]["grpc"]["port"] != probe_port:
                out.append(f"{deployment}: {probe} asks the TLS port, which kubelet cannot speak")

    gw = config(objects, "gateway-config")
    emb = config(objects, "embedder-config")
    if "IMGSEARCH_SERVER_TLS_CLIENT_CA" not in emb:
        out.append("embedder: no client CA: anyone reaching it may call it")
    for key in ("IMGSEARCH_EMBEDDERS", "IMGSEARCH_MILVUS_URI"):
        if not gw.get(key, "").startswith("https://"):
            out.append(f"gateway: {key} is not https://")
    for key in ("IMGSEARCH_EMBEDDER_TLS_CERT", "IMGSEARCH_EMBEDDER_TLS_KEY", "IMGSEARCH_API_KEYS_FILE",
                "IMGSEARCH_MILVUS_PASSWORD_FILE", "IMGSEARCH_MILVUS_CA_CERT"):
        if key not in gw:
            out.append(f"gateway: {key} unset")
    if gw.get("IMGSEARCH_GATEWAY_ALLOW_UNAUTHENTICATED", "false") != "false":
        out.append("gateway: serves without API keys")
    if any(o["kind"] == "Secret" for o in objects):
        out.append("a Secret is generated from the repository; Secrets are created in the cluster")

    # Network policies: closed by default, each port open to whom it must be.
    policies = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "NetworkPolicy"}
    deny = policies.get("default-deny-ingress")
    if not deny or deny["podSelector"] != {} or deny.get("ingress"):
        out.append("no default-deny-ingress NetworkPolicy")

    def sources(policy, port):
        """The `from` lists that open `port` (None: open to all)."""
        found = []
        for rule in policies.get(policy, {}).get("ingress", []):
            ports = [p["port"] for p in rule.get("ports", [])]
            if not ports or port in ports:
                found.append(rule.get("from"))
        return found

    gateway_pods = [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "gateway"}}}]
    monitoring = [{"namespaceSelector": {"matchLabels": {"imgsearch.io/monitoring": "true"}}}]
    expect = [
        ("gateway", 50051, [None]),
        ("gateway", 8080, [None]),
        ("gateway", 9103, [monitoring]),
        ("embedder", 50052, [gateway_pods]),
        ("embedder", 9102, [monitoring]),
    ]
    for policy, port, wanted in expect:
        got = sources(policy, port)
        if got != wanted:
            out.append(f"NetworkPolicy {policy}: port {port} open to {got}, expected {wanted}")
    milvus_from = sources("milvus", 19530)
    if gateway_pods not in milvus_from or None in milvus_from:
        out.append(f"NetworkPolicy milvus: 19530 open to {milvus_from}, expected gateway pods")
    gateway_service = next(o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == "gateway")
    if [p["port"] for p in gateway_service["spec"]["ports"]] != [50051, 8080]:
        out.append("Service gateway: clients should reach the gRPC and HTTP ports alone")
    return [f"{overlay}: {p}" for p in out], secrets_used


def check_cert_manager(secrets_used, milvus_values):
    out = []
    rendered_cm = subprocess.run(
        [bindir / "kubectl", "kustomize", root / "deploy/k8s/cert-manager"], capture_output=True, text=True
    )
    if rendered_cm.returncode != 0:
        return [f"cert-manager: kustomize failed: {rendered_cm.stderr.strip()}"]
    objects = [o for o in yaml.safe_load_all(rendered_cm.stdout) if o]
    certificates = {o["spec"]["secretName"]: o["spec"] for o in objects if o["kind"] == "Certificate"}
    issuers = {o["metadata"]["name"] for o in objects if o["kind"] == "Issuer"}
    for secret in sorted(secrets_used | {"milvus-tls"}):
        if secret in ("gateway-api-keys", "milvus-credentials"):
            continue
        spec = certificates.get(secret)
        if spec is None:
            out.append(f"cert-manager: no Certificate for Secret {secret}")
            continue
        if spec["issuerRef"]["name"] not in issuers:
            out.append(f"cert-manager: {secret}'s issuer is not defined")
        client = secret == "gateway-client-tls"
        usage = "client auth" if client else "server auth"
        if usage not in spec.get("usages", []):
            out.append(f"cert-manager: {secret} lacks usage {usage}")
        if not client and not any(n.endswith(".svc.cluster.local") for n in spec.get("dnsNames", [])):
            out.append(f"cert-manager: {secret} names no Service")
    for name, values in milvus_values.items():
        user = yaml.safe_load(values.get("extraConfigFiles", {}).get("user.yaml", "")) or {}
        security = user.get("common", {}).get("security", {})
        if security.get("authorizationEnabled") is not True:
            out.append(f"{name}: Milvus authorization is off")
        if security.get("tlsMode") not in (1, 2):
            out.append(f"{name}: Milvus TLS is off")
        mounts = {m["mountPath"] for m in values.get("volumeMounts", [])}
        for key in ("serverPemPath", "serverKeyPath"):
            path = user.get("tls", {}).get(key, "")
            if not any(path.startswith(m + "/") for m in mounts):
                out.append(f"{name}: tls.{key} {path!r} is not in a mounted volume")
        if not any(v.get("secret", {}).get("secretName") == "milvus-tls" for v in values.get("volumes", [])):
            out.append(f"{name}: the milvus-tls Secret is not mounted")
    return out


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
    found, used = check_security(overlay.name, objects)
    problems.extend(found)
    secrets_used |= used

milvus_values = {}
for values in sorted((root / "deploy/milvus").glob("*.yaml")):
    try:
        milvus_values[values.name] = yaml.safe_load(values.read_text())
        if not isinstance(milvus_values[values.name], dict):
            problems.append(f"{values.name}: not a mapping of Helm values")
    except yaml.YAMLError as e:
        problems.append(f"{values.name}: {e}")
if all(isinstance(v, dict) for v in milvus_values.values()):
    problems.extend(check_cert_manager(secrets_used, milvus_values))

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
