#!/usr/bin/env bash
# timm's own model tests (tests/timm_upstream/test_models.py, timm 1.0.31's) on every registered
# roadmap_* model, not only the four the full suite runs. About ten minutes on two cores.
# Usage: benchmarks/timm_upstream.sh [OUT.txt]   (default: results/benchmarks/timm_upstream.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-results/benchmarks/timm_upstream.txt}
python=${PYTHON:-.venv/bin/python}
{
  echo "# $(date -u +%FT%TZ) $($python -c 'import platform, torch, timm; print(platform.processor() or platform.machine(), "torch", torch.__version__, "timm", timm.__version__)')"
  echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg), cores: $(nproc)"
  ROADMAP_TIMM_MODELS=all "$python" -m pytest -q -n 2 -p no:randomly tests/timm_upstream 2>&1 | tail -n 25
} | tee "$out"
