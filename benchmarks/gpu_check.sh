#!/usr/bin/env bash
# One GPU check in one call: the offline demo, then the BERT-large throughput benchmark.
#
# Made for a bare GPU box with torch and transformers but without `datasets`, the hub or the
# offline model package: `python benchmarks/gpu_payload.py` builds `.gpu/` (wheels and an fp16
# MiniLM-L6) beforehand, and this script installs it under /tmp.  Each step has its own time
# limit so the later ones still report; logs and JSON go to $OUT (default: ./gpu-out).
#   bash benchmarks/gpu_check.sh [DEMO_S] [LEVERS_S] [CUDAGRAPHS_S] [CUDAGRAPH_WORKERS_S] [MPS_WORKERS_S]
# The defaults add up to 560 s, inside one 600 s device call (the H200 ran the demo in 42 s).
# A dry run on CPU: MODEL_CONFIG=toy DEMO_ARGS=--stabench-seeds=1 bash benchmarks/gpu_check.sh
set -u
MODEL_CONFIG=${MODEL_CONFIG:-large}
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
demo=1
if ! python3 -c "import datasets" 2>/dev/null; then
    if [ -d .gpu/wheels ]; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
            .gpu/wheels/*.whl || exit 1
        export PYTHONPATH=/tmp/site
    else  # the throughput rows need neither
        echo "no datasets and no .gpu/: the demo is skipped (run python benchmarks/gpu_payload.py, and carry .gpu)"
        demo=0
    fi
fi
export PYTHONPATH=$PWD:$PWD/.gpu/site${PYTHONPATH:+:$PYTHONPATH}
plugin=()
python3 -c "import importlib.metadata as m; m.version('stabench')" 2>/dev/null || plugin=(-p stabench.plugin)
nvidia-smi -L
python3 -m pytest --version
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"

# At most 8 files come back from a device call: the demo's report, JSON and figures travel as one archive.
if [ "$demo" = 1 ] && python3 -c "import datasets, stabench.models as m; print('datasets', datasets.__version__,
'minilm', m.offline_default_path())"; then
    echo "== offline demo (8 seeds x 2 recipes, MiniLM-L6, same-number) =="
    demo_start=$SECONDS
    mkdir -p /tmp/stabench-demo/report
    timeout "${1:-70}" python3 -m pytest benchmarks/test_offline_demo.py "${plugin[@]}" -p no:cacheprovider -q \
        ${DEMO_ARGS:-} --stabench-store=/tmp/stabench-demo/results.sqlite --stabench-md=/tmp/stabench-demo/report/demo.md \
        --stabench-json=/tmp/stabench-demo/report/demo.json --stabench-plots=/tmp/stabench-demo/report/plots 2>&1 |
        tee "$OUT/demo.log"
    echo "demo wall time: $((SECONDS - demo_start)) s" | tee -a "$OUT/demo.log"
    tar -C /tmp/stabench-demo -czf "$OUT/demo.tgz" report 2>/dev/null
fi

# The bound's ceilings: bf16 matrix rate and device-to-device copy bandwidth measured on the
# project's GPU machines: H200 788 TFLOP/s and 4.3 TB/s, H100 798 and 3.0 (data sheets: 4.8 and 3.35 TB/s).
peaks=()
case "$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)" in
    *H200*) peaks=(--peak-tflops 788 --peak-tbps 4.3) ;;
    *H100*) peaks=(--peak-tflops 798 --peak-tbps 3.0) ;;
esac

bench() {  # TIME_LIMIT NAME ARGS...: one benchmark process; its JSON is rewritten after every row
    local limit=$1 name=$2
    shift 2
    echo "== throughput $name: $MODEL_CONFIG BERT, batch 16 x 128: $*" | tee -a "$OUT/throughput.log"
    timeout "$limit" python3 benchmarks/throughput.py --model-config "$MODEL_CONFIG" --batch-size 16 --seq-len 128 \
        --steps 50 --repeats 1 "${peaks[@]}" --json "$OUT/throughput-$name.json" "$@" 2>&1 | tee -a "$OUT/throughput.log"
}
# Most wanted first.  Inductor's on-disk caches (shared by every process here) are warm after
# the K=1 CUDA-graph row, and the worker rows compile one worker before starting the others.
# K=2 CUDA-graph workers took 112 s on an H200 (benchmarks/results/h200-large-cudagraph-workers.json,
# 57.1 steps/s): the worker rows measure K=4, without and with MPS, which have not been measured.
bench "${2:-100}" levers --workers "" --overhead-steps 0 \
    --settings plain,minimal,stabench,stabench+tf32,stabench+bf16,batched+seeds4+bf16
bench "${3:-110}" cudagraphs --workers "" --settings plain,stabench+bf16+cudagraphs
bench "${4:-140}" cudagraph-workers --workers 4 --worker-setting stabench+bf16+cudagraphs --settings plain
command -v nvidia-cuda-mps-control >/dev/null &&
    bench "${5:-140}" cudagraph-workers-mps --mps --workers 4 --worker-setting stabench+bf16+cudagraphs --settings plain
echo "gpu_check total: $SECONDS s"
