#!/usr/bin/env bash
# Installs the dependencies, builds dpserve into build/, and makes sure a default
# model exists (the bundled stories260K from ../shared, else a generated one).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

bash scripts/install-deps.sh
jobs="${DPSERVE_BUILD_JOBS:-$(nproc)}"
# Trees at different paths (worktrees, a fresh clone) share ccache objects.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$(dirname "$here")}"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release ${DPSERVE_CMAKE_ARGS:-} >/dev/null
cmake --build build -j "$jobs"

shared="${DPSERVE_SHARED_DIR:-$here/../shared}"
if [ ! -f "$shared/models/stories260K/stories260K.bin" ] && [ ! -f models-generated/default/config.json ]; then
  echo "setup: $shared has no stories260K; writing a small random-weight default model to models-generated/default"
  /usr/bin/python3 tools/make_hf_model.py --arch llama --preset tiny --dtype bf16 \
    --out models-generated/default
fi
echo "setup: done. Try: build/bin/dpserve generate --prompt 'Once upon a time'"
