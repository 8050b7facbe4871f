#!/usr/bin/env bash
# Takes docs/webui.png: the web page in headless Chromium while a reply streams on a tp 2, dp 2 server
# (the same puppeteer test as CTest's e2e_webui, with WEBUI_SCREENSHOT set).
#   bash scripts/webui_screenshot.sh [BUILD_DIR] [OUT.png]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$here/build}"
out="$(realpath -m "${2:-$here/docs/webui.png}")"
shared="${DPSERVE_SHARED_DIR:-$here/../shared}"
# The random tiny Qwen3 of the structured-output tests (its fixture makes it).
[[ -f $build/constrain_models/qwen3-tiny/config.json ]] || ctest --test-dir "$build" -R '^constrain_tiny_models$' --output-on-failure
cd "$here/tests/node"
WEBUI_MODE=dp WEBUI_SCREENSHOT="$out" DPSERVE_SHARED_DIR="$shared" \
  "$here/tests/e2e/run_e2e.sh" "$build/bin/dpserve" --model-path "$build/constrain_models/qwen3-tiny" \
  --tokenizer-path "$shared/tokenizers/qwen3" --tp-size 2 --dp-size 2 --enable-dp-attention \
  -- node "$here/tests/node/webui.test.mjs"
ls -l "$out"
