#!/usr/bin/env bash
# The prepared GPU check, one command on a GPU machine without network:
#   1. installs the carried wheels (.whl/gpu/, from scripts/download_gpu_wheels.sh) of the packages
#      this Python lacks, offline and without touching the ones it has;
#   2. prints the versions it runs with (torch, transformers, peft, trl, accelerate, datasets),
#      the CUDA device and its bf16 support;
#   3. runs python -m ftrl_lab.gpu_check (arguments passed through; default output runs/gpu_check,
#      or $OUT/gpu_check when $OUT is set) with the carried tokenizer when present.
#   bash scripts/gpu_check.sh [--tiny] [--budget-s 450] [...]   (python -m ftrl_lab.gpu_check --help)
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS="${WHEELS:-.whl/gpu}"
PY="${PYTHON:-python}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" TRL_EXPERIMENTAL_SILENCE=1

if compgen -G "$WHEELS/*.whl" >/dev/null; then
  MISSING=$("$PY" - "$WHEELS" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
for wheel in sorted(Path(sys.argv[1]).glob("*.whl")):
    name = wheel.name.split("-")[0]
    try:
        version(name)
    except PackageNotFoundError:
        print(wheel)
PY
)
  if [ -n "$MISSING" ]; then
    echo "gpu_check.sh: installing from $WHEELS: $(echo "$MISSING" | xargs -n1 basename | tr '\n' ' ')"
    # --no-deps: the carried set is complete for what is missing; the machine's packages stay as they are
    # shellcheck disable=SC2086
    "$PY" -m pip install --quiet --no-index --no-deps --find-links "$WHEELS" $MISSING
  fi
fi

"$PY" - <<'PY'
import importlib, sys
from importlib.metadata import version
import torch
need = ("torch", "transformers", "peft", "trl", "accelerate", "datasets")
print("python", sys.version.split()[0], "|", " ".join(f"{n} {version(n)}" for n in need))
for module in ("trl", "datasets", "peft", "jsonschema", "fastjsonschema", "func_timeout"):
    importlib.import_module(module)  # fails here, not minutes into the check
if torch.cuda.is_available():
    print(f"cuda {torch.version.cuda} | {torch.cuda.get_device_name(0)} | bf16 {torch.cuda.is_bf16_supported()}"
          f" | {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
else:
    print("no CUDA device: the check runs on the CPU (use --tiny)")
PY

ARGS=("$@")
if [ -d "$WHEELS/tokenizer" ] && [[ " $* " != *" --tokenizer "* ]]; then
  ARGS+=(--tokenizer "$WHEELS/tokenizer")
fi
if [ -n "${OUT:-}" ] && [[ " $* " != *" --out "* ]]; then
  ARGS+=(--out "$OUT/gpu_check")
fi
exec "$PY" -m ftrl_lab.gpu_check "${ARGS[@]}"
