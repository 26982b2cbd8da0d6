#!/usr/bin/env bash
# Download, here (with network), the wheels the GPU machine lacks, for its Python 3.12 / manylinux
# x86_64, into the ignored folder .whl/gpu/ that travels with the working tree; plus the default
# model's tokenizer files (.whl/gpu/tokenizer/, a few MB) so the check needs no model download.
# The GPU machine already has torch, transformers, peft, accelerate, pandas, pyarrow, safetensors and
# tokenizers (with their dependencies: numpy, huggingface_hub, httpx, pyyaml, jinja2, psutil, ...).
#   bash scripts/download_gpu_wheels.sh [DEST]        # then: bash scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DEST="${1:-.whl/gpu}"
PY_VERSION="${PY_VERSION:-3.12}"
PLATFORM="${PLATFORM:-manylinux2014_x86_64}"
# trl + datasets and what they need beyond the machine's packages; the project's own pure-python needs
# (jsonschema and its helpers, fastjsonschema). Versions: those this checkout is tested with.
WHEELS=(
  "trl==1.16.0" "datasets==5.2.0"
  "dill>=0.3.8,<0.4.2" "multiprocess>=0.70.16,<0.70.19" "xxhash" "fsspec[http]>=2023.1.0,<=2026.2.0"
  "jsonschema>=4.20" "jsonschema-specifications" "referencing" "rpds-py" "attrs" "fastjsonschema>=2.19"
)
SDIST_ONLY=("func-timeout==4.3.5")   # pure python, published as an sdist only: built into a wheel here
mkdir -p "$DEST"
python -m pip download --quiet --dest "$DEST" --only-binary=:all: --python-version "$PY_VERSION" \
  --platform "$PLATFORM" --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  --implementation cp --no-deps "${WHEELS[@]}"
python -m pip wheel --quiet --no-deps --wheel-dir "$DEST" "${SDIST_ONLY[@]}"
# The default model's tokenizer (SmolLM2 with the tool-calling template), converted once here.
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" python - "$DEST/tokenizer" <<'PY'
import sys
from transformers import AutoTokenizer
from ftrl_lab.agent.models import ensure_default_model
AutoTokenizer.from_pretrained(ensure_default_model(), local_files_only=True).save_pretrained(sys.argv[1])
PY
ls -1 "$DEST"
TOTAL=$(du -sb "$DEST" | cut -f1)
TREE=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
python - "$TOTAL" "$TREE" <<'PY'
import sys
wheels, tree = (int(x) for x in sys.argv[1:])
mib = 2**20
print(f"{sys.argv[0] if False else 'download_gpu_wheels'}: {wheels / mib:.1f} MiB in the wheel folder, "
      f"{tree / mib:.1f} MiB tracked files, {(wheels + tree) / mib:.1f} MiB together (limit 64 MiB)")
sys.exit(0 if wheels + tree < 64 * mib else 1)
PY
