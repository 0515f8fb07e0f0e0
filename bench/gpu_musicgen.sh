#!/usr/bin/env bash
# MusicGen's GPU figures (issue 17, part 1) in one prepared call on a lent GPU machine, whose python3 holds torch with
# CUDA but none of ttag's pure-Python needs, and which can fetch nothing.
#
# Here, once (downloads the wheels it lacks into .whl/, which git ignores through .git/info/exclude):
#     bash bench/gpu_musicgen.sh --wheels
# Then one device call: carry [".whl"], timeout_s 580, command
#     bash bench/gpu_musicgen.sh
# It prints the machine, then bench_musicgen.py's CUDA mode (random-weight small, medium and large decoders in
# float16, the fast loop with CUDA graphs against transformers' generate(), 10 s and 30 s of audio), small first: the
# target is >= 250 decoder steps/s for small at batch 1 with guidance; then four takes of small made together. Everything
# is also written under $OUT, so what ran before a timeout comes back.
set -uo pipefail
cd "$(dirname "$0")/.."

WHEELS=(transformers==5.24.0 platformdirs tomli-w)  # torch, tokenizers, huggingface_hub, numpy: the machine's own

if [ "${1:-}" = "--wheels" ]; then
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
    python=.venv/bin/python  # the dev environment's, else the system's: any pip downloads
    [ -x "$python" ] || python=python3
    exec "$python" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_17_x86_64 -d .whl "${WHEELS[@]}"
fi

out=${OUT:-/tmp/gpu-musicgen}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl ||
    { echo "no wheels in .whl/: run 'bash bench/gpu_musicgen.sh --wheels' here first and carry .whl"; exit 2; }
export PYTHONPATH=/tmp/site:$PWD

{
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
    python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'
} 2>&1 | tee "$out/machine.txt"

for run in small:150 medium:150 large:170; do  # size:seconds, 470 s in all
    size=${run%%:*}
    timeout "${run##*:}" python3 bench/bench_musicgen.py --decoders --device cuda --size "$size" --seconds 10 30 2>&1 |
        tee "$out/musicgen-cuda-$size.txt"
done
# four takes of small made together (ttag's batch of takes) against generate() four times
timeout 50 python3 bench/bench_musicgen.py --decoders --device cuda --size small --seconds 10 --takes 4 2>&1 |
    tee "$out/musicgen-cuda-small-4-takes.txt"
