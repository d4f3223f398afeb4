#!/usr/bin/env bash
# One GPU check in one call: the offline demo, then the BERT-large throughput benchmark.
#
# Made for a bare GPU box with torch and transformers but without `datasets`, the hub or the
# offline model package: `python benchmarks/gpu_payload.py` builds `.gpu/` (wheels and an fp16
# MiniLM-L6) beforehand, and this script installs it under /tmp.  Each step has its own time
# limit so the later ones still report; logs and JSON go to $OUT (default: ./gpu-out).
#   bash benchmarks/gpu_check.sh [DEMO_S] [LEVERS_S] [CUDAGRAPHS_S] [CUDAGRAPH_WORKERS_S]
# A dry run on CPU: MODEL_CONFIG=toy DEMO_ARGS=--stabench-seeds=1 bash benchmarks/gpu_check.sh
set -u
MODEL_CONFIG=${MODEL_CONFIG:-large}
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [ -d .gpu/wheels ] && ! python3 -c "import datasets" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .gpu/wheels/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD:$PWD/.gpu/site${PYTHONPATH:+:$PYTHONPATH}
plugin=()
python3 -c "import importlib.metadata as m; m.version('stabench')" 2>/dev/null || plugin=(-p stabench.plugin)
nvidia-smi -L
python3 -c "import torch, transformers, datasets, stabench.models as m; print('torch', torch.__version__,
'transformers', transformers.__version__, 'datasets', datasets.__version__, 'minilm', m.offline_default_path())"

echo "== offline demo (8 seeds x 2 recipes, MiniLM-L6, same-number) =="
demo_start=$SECONDS
timeout "${1:-100}" python3 -m pytest benchmarks/test_offline_demo.py "${plugin[@]}" -p no:cacheprovider -q ${DEMO_ARGS:-} \
    --stabench-store=/tmp/stabench-demo/results.sqlite --stabench-md="$OUT/demo.md" \
    --stabench-json="$OUT/demo.json" --stabench-plots=/tmp/stabench-demo/plots 2>&1 | tee "$OUT/demo.log"
echo "demo wall time: $((SECONDS - demo_start)) s" | tee -a "$OUT/demo.log"
tar -C /tmp/stabench-demo -czf "$OUT/demo-plots.tgz" plots 2>/dev/null

bench() {  # TIME_LIMIT NAME ARGS...: one benchmark process; its JSON is rewritten after every row
    local limit=$1 name=$2
    shift 2
    echo "== throughput $name: $MODEL_CONFIG BERT, batch 16 x 128: $*" | tee -a "$OUT/throughput.log"
    timeout "$limit" python3 benchmarks/throughput.py --model-config "$MODEL_CONFIG" --batch-size 16 --seq-len 128 \
        --steps 50 --repeats 1 --json "$OUT/throughput-$name.json" "$@" 2>&1 | tee -a "$OUT/throughput.log"
}
bench "${2:-200}" levers --workers 1,2,4,8 --worker-setting stabench+bf16 \
    --settings plain,plain+nosync,minimal,stabench,stabench+tf32,stabench+bf16,batched+seeds4+bf16
bench "${3:-160}" cudagraphs --workers "" --settings plain,stabench+bf16+cudagraphs,stabench+tf32+cudagraphs
bench "${4:-100}" cudagraph-workers --workers 4 --worker-setting stabench+bf16+cudagraphs --settings plain
echo "gpu_check total: $SECONDS s"
