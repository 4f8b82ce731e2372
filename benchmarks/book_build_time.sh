#!/usr/bin/env bash
# Time the whole book from a clean clone: install (make install) and build (jupyter-book -W),
# as a reader or CI would run them.   Usage: bash benchmarks/book_build_time.sh [REPO]
set -euo pipefail
repo=${1:-$(cd "$(dirname "$0")/.." && pwd)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q "$repo" "$work/book"
cd "$work/book"
t0=$(date +%s)
make install > "$work/install.log" 2>&1
t1=$(date +%s)
.venv/bin/jupyter-book build . -W -n --keep-going > "$work/build.log" 2>&1 || { tail -40 "$work/build.log"; exit 1; }
t2=$(date +%s)
chapters=$(ls chapters/*.ipynb | wc -l)
echo "clean clone of $(git -C "$repo" rev-parse --short HEAD): $chapters notebooks"
echo "install: $((t1 - t0)) s   book build: $((t2 - t1)) s   total: $((t2 - t0)) s (target: under 480 s)"
