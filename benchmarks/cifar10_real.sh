#!/usr/bin/env bash
# Train the article's CNN for 10 epochs on the real CIFAR-10 and record test accuracy and time.
# Usage: bash benchmarks/cifar10_real.sh [ARCHIVE] [OUT.json]
# ARCHIVE defaults to ../shared/data/cifar10-jpeg.tar.gz (CIFAR-10 as JPEG image folders); it is
# extracted to a temporary folder that is removed afterwards. Nothing from it enters the repository.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
archive=${1:-$here/../shared/data/cifar10-jpeg.tar.gz}
out=${2:-/tmp/cifar10_seed_cnn.json}
[ -f "$archive" ] || { echo "error: $archive not found: pass the CIFAR-10 JPEG archive" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar xzf "$archive" -C "$work"
python=${PYTHON:-$here/.venv/bin/python}
"$python" -m lib.train --dataset cifar10 --data-root "$work" --model seed_cnn --epochs 10 --seed 0 \
    --quiet --metrics-out "$out"
