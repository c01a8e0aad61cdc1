#!/bin/bash
# Device-machine wrapper of gpu_pretrain.py: unpack the carried EGL libraries (.gl) and Python 3.12 wheels (.whl),
# as the device README describes, then run it on the GPU.
# Both folders are git-ignored; fill them once here: .gl with `apt-get download libvulkan1 libegl1 libglvnd0
# libopengl0 libgl1 libglx0 libgles2` (amd64), .whl with `pip download --no-deps --only-binary=:all: --python-version
# 3.12 --platform manylinux...` of mujoco, mujoco-core, mujoco-studio, glfw, pyopengl, websockets, rosbags, apsw,
# backports.zstd, lz4, ruamel.yaml, mcap, mcap-ros2-support and zstandard (the versions of .venv).
# Usage: gpu_pretrain.sh DEMOS_PER_TASK BUDGET_S WORKERS BATCHES (docs/learning.md row 41: 72 240 14 256; row 51,
# the better v0: 128 380 14 256, one ~9 min call on an H200 with the demos collected there). Row 56: 160 330 14 512
# ran past the 575 s call limit (96 s of demos and 99 s of loading before training; the probe under-timed the steps)
# and saved nothing; pretrain now stops at its budget, but keep BUDGET_S <= the call's limit - 240 s at 160 demos.
set -u
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 1
export PYTHONPATH=/tmp/site:src MUJOCO_GL=egl PYTHONUNBUFFERED=1
v=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
[ -f $v ] && export __EGL_VENDOR_LIBRARY_FILENAMES=$v
nvidia-smi -L; nproc
python3 -c "import torch, mujoco; print('torch', torch.__version__, torch.cuda.is_available(), 'mujoco', mujoco.__version__)" \
  || exit 2
python3 scripts/exp/gpu_pretrain.py /tmp/gp "$1" "$2" cuda "$3" "$4" 2> >(tee $OUT/stderr.log | tail -c 3000 >&2)
rc=$?
cp -r /tmp/gp/b[0-9]* "$OUT"/ 2>/dev/null
exit $rc
