#!/usr/bin/env bash
# Host-side preparation for scripts/device_issue11.sh (run once, here, from anywhere):
# - the CIFAR-10 images into .data/cifar-10-batches-py (ignored by .git/info/exclude; carried),
# - the wheels the GPU machine lacks into .whl/ (diffusers and pooch with their missing needs;
#   pure-Python wheels for its Python 3.12), ignored and carried likewise.
# DATA=<folder holding cifar-10-batches-py> (default ../shared/data beside the checkout).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
mkdir -p .git/info
for p in /.data/ /.whl/; do grep -qxF "$p" .git/info/exclude 2>/dev/null || echo "$p" >> .git/info/exclude; done
if [ ! -f .data/cifar-10-batches-py/test_batch ]; then
  mkdir -p .data
  cp -r "$DATA/cifar-10-batches-py" .data/
  chmod -R u+w .data
fi
PY=${PY:-.venv/bin/python}
mkdir -p .whl
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl diffusers==0.42.1 pooch==1.9.0 platformdirs==4.14.9 importlib_metadata==10.2.0
ls -la .whl .data/cifar-10-batches-py
git status --short --ignored .data .whl
du -sh .whl .data
