#!/usr/bin/env bash
# Make this clone ready to run: Debian packages the tests need, and the Python venv.
#
# The venv lives outside the clone (~/.cache/napari-breastmri/venv-<hash>), keyed by a hash of
# the dependency files, and is linked as .venv; a second run (or a second clone) reuses it.
# torch/torchvision are pinned to the pair that lies on this machine's disk (no big download).
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES="xvfb xauth libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4
libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xinerama0
libxcb-xfixes0 libxcb-xkb1 libdbus-1-3 libfontconfig1 dcm2niix dicom3tools dcmtk orthanc
orthanc-dicomweb"

missing=()
for pkg in $DEB_PACKAGES; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: missing Debian packages (run as root: apt-get install ${missing[*]}); tests that need them will skip" >&2
  fi
fi

PYTHON=$(command -v python3.11 || command -v python3)
HASH=$(cat requirements/lock.txt tools/setup_env.sh | sha256sum | cut -c1-12)
VENV="${BREASTMRI_VENV_ROOT:-$HOME/.cache/napari-breastmri}/venv-$HASH"
if [ ! -f "$VENV/.complete" ]; then
  echo "setup: creating venv $VENV (torch from local disk, a few minutes once)" >&2
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade "pip<26" "setuptools>=70" wheel 2>&1 | grep -v "is ignored" || true
  "$VENV/bin/pip" install -q torch==2.14.1 torchvision==0.29.1 2>&1 | grep -v "is ignored" || true
  "$VENV/bin/pip" install -q -r requirements/lock.txt 2>&1 | grep -v "is ignored" || true
  "$VENV/bin/python" -c "import torch, napari, monai, pytorch_grad_cam, highdicom" \
    || { echo "setup: venv install failed" >&2; exit 1; }
  touch "$VENV/.complete"
fi
ln -sfn "$VENV" .venv
# The editable install is per clone (cheap): it registers the napari manifest and `breastmri`.
.venv/bin/pip install -q --no-deps --no-build-isolation -e . 2>&1 | grep -v "is ignored" || true
