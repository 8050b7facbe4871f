#!/usr/bin/env bash
# Installs every Debian package dpserve needs to build, test and benchmark.
# Idempotent: packages already present are left as they are.
set -euo pipefail

pkgs=(
  build-essential cmake ninja-build pkg-config git
  ccache                               # compiler cache: rebuilds of several trees share objects
  libopenmpi-dev openmpi-bin           # collectives between ranks
  libhwloc-dev                         # --numa: the placement plan from the machine topology
  nlohmann-json3-dev                   # config.json, safetensors headers, HTTP bodies
  libcpp-httplib-dev                   # HTTP server
  libssl-dev                           # --nnodes rendezvous: HMAC-SHA256 (libcrypto)
  libmsgpack-cxx-dev                   # per-step control message
  libpcre2-dev                         # tokenizer pre-tokenizer regex
  libicu-dev                           # tokenizer NFC normalization
  libcli11-dev                         # command line
  libjpeg-dev libpng-dev               # image inputs (libjpeg-turbo, libpng)
  libspdlog-dev libfmt-dev             # logging
  libgtest-dev libgmock-dev libbenchmark-dev
  python3-numpy python3-jinja2         # independent references used by tests
  libopenblas0-serial                  # NumPy's BLAS: with Debian's reference BLAS the float64 model
                                       # references ran 3-5x slower; serial, as tests run two at a time
  python3-pil                          # image preprocessing reference (tests/vision)
  python3-pydantic                     # tests/constrain/pydantic_corpus.py: schemas as Pydantic writes them
  nodejs curl                          # real-client tests and tokenizer oracle
  chromium                             # tests/node/webui.test.mjs: the web page in a real headless browser
  iproute2 util-linux                  # tests/multihost: network namespaces, veth pairs, unshare
  gdb procps                           # tests/e2e/run_e2e.sh: where each rank waits when a server hangs
  clang libclang-rt-14-dev libomp-14-dev  # scripts/fuzz.sh: libFuzzer runtime, OpenMP for clang
)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "install-deps: all Debian packages present"
fi

# npm ships inside the NodeSource nodejs package on these machines; Debian's own npm
# package conflicts with it, so only fall back to it when no npm is on PATH.
if ! command -v npm >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends npm
fi

# Node packages used only as test oracles / real clients (tests/node).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -f "$here/tests/node/package.json" ] && { [ ! -d "$here/tests/node/node_modules" ] || [ "$here/tests/node/package.json" -nt "$here/tests/node/node_modules" ]; }; then
  echo "install-deps: npm install in tests/node"
  (cd "$here/tests/node" && npm install --no-audit --no-fund --silent)
fi
