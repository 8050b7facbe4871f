#!/bin/bash
# Issue 18's table: how decoded images should reach the ranks, with real 1-4 MP JPEGs made here.
# Runs build/bin/image_transfer_bench (see its header for the strategies) at 10 and 50 requests,
# TP=2 (one group of 2 ranks) and TP=4 with DP attention (2 groups of 2 ranks), every strategy twice
# per run in the order a b s c c s b a, so the ratios come from the same minute of the machine. On a shared or small machine
# read the ratios only; absolute seconds move with the load (4 ranks on 2 cores are oversubscribed).
#
#   bash bench/image_transfer.sh [BUILD_DIR] [RANKS:DP ...]      (default: build, 2:1 4:2)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build}
shift || true
layouts=("$@")
[ ${#layouts[@]} -gt 0 ] || layouts=(2:1 4:2)
bin=$build/bin/image_transfer_bench
[ -x "$bin" ] || { echo "build image_transfer_bench first: cmake --build $build --target image_transfer_bench" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
/usr/bin/python3 "$here/make_photos.py" "$dir" 8 > /dev/null
echo "images: $(ls "$dir" | wc -l) JPEGs, $(du -sh "$dir" | cut -f1) ($(/usr/bin/python3 -c "
from PIL import Image; import glob, sys
print(', '.join(sorted({'%dx%d' % Image.open(p).size for p in glob.glob(sys.argv[1] + '/*.jpg')})))" "$dir"))"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
for layout in "${layouts[@]}"; do
  np=${layout%:*} dp=${layout#*:}
  for n in 10 50; do
    echo
    echo "== TP=$np, $dp DP group(s), $n requests"
    mpirun -np "$np" --bind-to none "$bin" --dp "$dp" --requests "$n" --order abscscba "$dir"/*.jpg
  done
done
