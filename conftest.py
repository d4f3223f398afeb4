"""Repository-level pytest configuration shared by tests/ and benchmarks/."""
import os

# Fast tokenizers warn (and can deadlock) when xdist or subprocess tests fork after use.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
