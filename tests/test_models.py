"""Models by hub id go through the hub cache's real layout, built here from a tiny BERT (no network)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stabench import models, profiles
from stabench.store import Store

FIRST, SECOND = "1" * 40, "2" * 40


def _snapshot(cache: Path, source: str, commit: str, repo: str = "someorg/tiny-bert") -> None:
    """Lay out a model as the hub client caches it, with ``commit`` as the current main."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    shutil.copytree(source, folder / "snapshots" / commit)
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text(commit)


@pytest.fixture
def hub_cache(tmp_path, tiny_model, monkeypatch):
    cache = tmp_path / "hub"
    _snapshot(cache, tiny_model, FIRST)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(profiles, "hub_reachable", lambda: False)
    models.hub_commit.cache_clear()
    yield cache
    models.hub_commit.cache_clear()


def test_a_hub_model_is_keyed_by_the_commit_it_loads(hub_cache, tiny_model):
    """Re-uploaded weights under the same id must not reuse the old runs."""
    first = models.resolve("someorg/tiny-bert")
    assert first.revision == FIRST and first.describe() == {"name": "someorg/tiny-bert", "revision": FIRST}
    _snapshot(hub_cache, tiny_model, SECOND)
    models.hub_commit.cache_clear()
    assert models.resolve("someorg/tiny-bert").revision == SECOND


def test_a_hub_model_missing_from_the_cache_is_named(hub_cache):
    with pytest.raises(RuntimeError, match="model 'someorg/other' is not a local folder, a built-in model"):
        models.resolve("someorg/other")


def test_a_run_of_a_hub_model_loads_and_records_its_commit_offline(hub_cache, tmp_path):
    """The code path users run on bert-large-uncased: hub id -> cache -> from_pretrained at a commit."""
    env = {**os.environ, "HF_HUB_CACHE": str(hub_cache), "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-m", "stabench.cli", "run", "--task", "same-number", "--model",
                          "someorg/tiny-bert", "--set", "max_steps=2", "--seeds", "0", "--cpu-threads", "1"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    with Store(os.environ["STABENCH_STORE"]) as store:  # the test's own store (tests/conftest.py)
        (result,) = store.query(model="someorg/tiny-bert")
    assert result.model["revision"] == FIRST and result.model["num_parameters"] > 0


def test_the_tiny_model_ships_an_encoder_so_each_seed_draws_its_own_head(tiny_model):
    """Seeds differ in head init as with a real pretrained encoder, not only in data order."""
    import torch
    import transformers

    source = models.resolve(tiny_model)
    loaded = []
    for seed in (0, 1, 0):
        transformers.set_seed(seed)
        loaded.append(models.load_model(source, 2, 0.1, "sdpa"))
    heads = [m.classifier.weight for m in loaded]
    assert not torch.equal(heads[0], heads[1]) and torch.equal(heads[0], heads[2])
    encoders = [m.bert.encoder.layer[0].attention.self.query.weight for m in loaded]
    assert torch.equal(encoders[0], encoders[1])  # the "pretrained" weights load the same for every seed


def _stored_record(prepared, model_info):
    """A stored record of ``prepared``'s run with the given model part, without training."""
    from stabench.result import RunResult

    return RunResult(key="k", task=prepared.task_info, model=model_info, recipe={}, recipe_name="r", recipe_hash="h",
                     seed=0, environment={}, metrics={"accuracy": 0.5}, primary_metric="accuracy",
                     majority_accuracy=0.5, failed=True, collapsed=True, diverged=False, steps=1, wall_time_s=1.0,
                     steps_per_s=1.0, started_at="", finished_at="").to_json()


def _saved_classifier(tiny_model, path, num_labels=2):
    """A folder saved from a fine-tuned classifier: the tiny encoder with a trained-looking head."""
    import transformers

    shutil.copytree(tiny_model, path)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=num_labels)
    model.classifier.weight.data.fill_(0.5)
    model.save_pretrained(path)
    return model


@pytest.mark.parametrize("saved_labels", [2, 3])
def test_a_folder_holding_a_head_still_gives_each_seed_its_own_head(tiny_model, tmp_path, saved_labels):
    """The head a classifier folder holds is drawn afresh, as a missing one is: the saved one would
    make every seed start from the same head; a head for another label count loads too."""
    import torch
    import transformers

    _saved_classifier(tiny_model, tmp_path / "cls", saved_labels)
    source = models.resolve(str(tmp_path / "cls"))
    heads = []
    for seed in (0, 1, 0):
        transformers.set_seed(seed)
        model = models.load_model(source, 2, 0.1)
        heads.append(model.classifier.weight)
        assert abs(float(model.classifier.weight.detach().std()) - 0.02) < 0.01 and not (model.classifier.bias != 0).any()
    assert not torch.equal(heads[0], heads[1]) and torch.equal(heads[0], heads[2])


def test_an_encoder_weight_that_does_not_fit_its_config_is_an_error(tiny_model, tmp_path):
    """Only a head is drawn afresh for another shape; an encoder weight never silently."""
    import json

    shutil.copytree(tiny_model, tmp_path / "bad")
    config = json.loads((tmp_path / "bad" / "config.json").read_text())
    (tmp_path / "bad" / "config.json").write_text(json.dumps({**config, "intermediate_size": 128}))
    with pytest.raises(RuntimeError, match=r"weight 'bert\.encoder\..*' does not fit its config's shape; the "
                                           r"folder's weights and config.json disagree"):
        models.load_model(models.resolve(str(tmp_path / "bad")), 2, 0.1)


def test_a_folder_saved_without_its_tokenizer_is_refused_before_any_data_loads(tiny_model, tmp_path):
    """transformers 5 loads such a folder with a stub tokenizer of special tokens: every word became
    [UNK] and the runs collapsed, as if the recipe were unstable (4 asked for protobuf)."""
    from stabench.train import prepare

    (tmp_path / "weights-only").mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(Path(tiny_model) / name, tmp_path / "weights-only" / name)
    with pytest.raises(RuntimeError, match=r"^model 'weights-only': .*; the folder holds no tokenizer files "
                                           r"\(tokenizer.json, .*\): save them beside the weights with "
                                           r"tokenizer.save_pretrained\(folder\)$"):
        prepare("polarity", str(tmp_path / "weights-only"), "bert-default", 0, device="cpu")
    assert prepare("polarity", tiny_model, "bert-default", 0, device="cpu").key  # with its tokenizer: fine


def test_a_tokenizer_that_needs_no_files_loads_from_a_folder_without_any(tmp_path):
    """CANINE reads characters: its folder holds config and weights only, and is not refused."""
    import transformers

    config = transformers.CanineConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=64, num_hash_buckets=64)
    transformers.CanineModel(config).save_pretrained(tmp_path / "canine")
    assert not any((tmp_path / "canine" / name).exists() for name in models.TOKENIZER_FILES)
    tokenizer = models.load_tokenizer(models.resolve(str(tmp_path / "canine")))
    assert tokenizer("ab")["input_ids"][1:3] == [ord("a"), ord("b")]


def test_a_tokenizer_far_smaller_than_the_models_vocabulary_is_refused(tiny_model, tmp_path):
    """A folder whose tokenizer files are another, tiny tokenizer's: nearly every word would be [UNK]."""
    from stabench.train import prepare

    shutil.copytree(tiny_model, tmp_path / "small-vocabulary")
    for name in models.TOKENIZER_FILES:
        (tmp_path / "small-vocabulary" / name).unlink(missing_ok=True)
    models.word_piece_tokenizer(models.tiny_vocabulary()[:20]).save_pretrained(tmp_path / "small-vocabulary")
    with pytest.raises(RuntimeError, match=r"^model 'small-vocabulary': its tokenizer knows 20 tokens, its config 182 "
                                           r"\(vocab_size\), so nearly every word would be \[UNK\]; the tokenizer "
                                           r"files are not the model's own$"):
        prepare("polarity", str(tmp_path / "small-vocabulary"), "bert-default", 0, device="cpu")


def test_a_checkpoint_saved_for_another_problem_type_trains_as_a_single_label_classifier(tiny_model, tmp_path):
    """A multi-label checkpoint's config chose BCE, and training failed on the label shape."""
    import json

    from stabench.recipes import get_recipe
    from stabench.train import run

    shutil.copytree(tiny_model, tmp_path / "multi")
    config = json.loads((tmp_path / "multi" / "config.json").read_text())
    (tmp_path / "multi" / "config.json").write_text(json.dumps({**config, "problem_type": "multi_label_classification"}))
    result = run("polarity", str(tmp_path / "multi"), get_recipe("bert-default", max_steps=2), 0, device="cpu")
    assert result.steps == 2 and 0.0 <= result.metrics["accuracy"] <= 1.0


def test_flash_attention_that_cannot_run_here_is_one_line(tiny_model):
    """It raised an ImportError traceback from inside transformers."""
    from transformers.utils import is_flash_attn_2_available

    if is_flash_attn_2_available():
        pytest.skip("flash-attn is installed here")
    with pytest.raises(RuntimeError, match=r"^model '.*': attention='flash_attention_2' cannot run here: \S"):
        models.load_model(models.resolve(tiny_model), 2, 0.1, "flash_attention_2")


def test_a_transformers_release_that_switched_torch_off_is_named_in_one_line(tiny_model, monkeypatch):
    """transformers 5.20 and newer switch torch 2.4 off at import; each model load then raised a
    five-line ImportError about "PyTorch was not found"."""
    import torch
    import transformers

    from stabench.analysis import load_masked_lm

    monkeypatch.setattr(transformers.utils, "is_torch_available", lambda: False)
    for load in (lambda: models.load_model(models.resolve(tiny_model), 2, 0.1), lambda: load_masked_lm(tiny_model)):
        with pytest.raises(RuntimeError) as error:
            load()
        assert str(error.value) == (f"transformers {transformers.__version__} does not work with torch "
                                    f"{torch.__version__}: it asks for a newer torch; install one it supports, or a "
                                    f"transformers release that supports torch {torch.__version__} (stabench's "
                                    f"README, Install, names the pins)")


def test_bert_init_draws_norms_and_bare_biases_and_leaves_what_it_cannot_draw():
    """DeBERTa v1's own LayerNorm class and its q_bias / v_bias stayed pretrained under re-init; a
    head of another kind must stay refused (every seed would keep its one head)."""
    import torch

    from stabench.models import draw_bert_init

    class DebertaLayerNorm(torch.nn.Module):  # transformers' own class, by its name
        def __init__(self):
            super().__init__()
            self.weight, self.bias = torch.nn.Parameter(torch.full((4,), 3.0)), torch.nn.Parameter(torch.ones(4))

    class Attention(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.q_bias, self.v_bias = torch.nn.Parameter(torch.ones(4)), torch.nn.Parameter(torch.ones(4))

    class CosineNormClassifier(torch.nn.Module):  # "Norm" in its name, a matrix of weights
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.full((2, 4), 3.0))

    class Scaled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.logit_bias, self.unbiased_scale = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))

    norm, attention = DebertaLayerNorm(), Attention()
    assert draw_bert_init(norm, 0.02) == [norm.weight, norm.bias]
    assert norm.weight.eq(1).all() and norm.bias.eq(0).all()
    assert draw_bert_init(attention, 0.02) == [attention.q_bias, attention.v_bias]
    assert attention.q_bias.eq(0).all() and attention.v_bias.eq(0).all()
    for module in (CosineNormClassifier(), Scaled()):
        before = [p.detach().clone() for p in module.parameters()]
        assert draw_bert_init(module, 0.02) == []
        assert all(torch.equal(a, b) for a, b in zip(before, module.parameters()))


def test_a_modernbert_head_without_layernorm_biases_is_drawn_afresh(tmp_path):
    import torch
    import transformers

    config = transformers.ModernBertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                           intermediate_size=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                           cls_token_id=1, sep_token_id=2)
    saved = transformers.ModernBertForSequenceClassification(config)
    saved.save_pretrained(tmp_path / "modernbert")
    heads = []
    for seed in (0, 1):
        transformers.set_seed(seed)
        heads.append(models.load_model(models.ModelSource("mb", str(tmp_path / "modernbert")), 2, 0.1).classifier.weight)
    assert not torch.equal(heads[0], heads[1]) and not torch.equal(heads[0], saved.classifier.weight)


def test_a_local_folder_is_one_model_by_any_path_and_another_when_its_config_changes(tiny_model, tmp_path,
                                                                                       monkeypatch):
    import json

    from stabench.train import prepare

    shutil.copytree(tiny_model, tmp_path / "mybert")
    (tmp_path / "tests").mkdir()
    monkeypatch.chdir(tmp_path)
    here = prepare("polarity", "./mybert", "bert-default", 0, device="cpu")
    monkeypatch.chdir(tmp_path / "tests")
    there = prepare("polarity", "../mybert", "bert-default", 0, device="cpu")
    assert here.key == there.key and here.model_info["name"] == "mybert" == models.stored_name("../mybert")
    config = json.loads((tmp_path / "mybert" / "config.json").read_text())
    (tmp_path / "mybert" / "config.json").write_text(json.dumps({**config, "hidden_act": "relu"}))
    assert prepare("polarity", "../mybert", "bert-default", 0, device="cpu").key != here.key
    assert models.stored_name("bert-large-uncased") == "bert-large-uncased" and models.stored_name("tiny-bert") == "tiny-bert"
    (tmp_path / "latest").symlink_to(tmp_path / "mybert")  # a link moved to a newer folder keeps the study's name
    assert models.stored_name("../latest") == "latest" and models.stored_name("../mybert/") == "mybert"
    # Runs stored before under the path as typed read back under the folder's name.
    from stabench.result import RunResult

    old = RunResult.from_json(_stored_record(here, {"name": "./models/mybert", "revision": None, "weights_sha256": "ab"}))
    assert old.model["name"] == "mybert"


def test_a_trainer_checkpoint_s_optimizer_state_and_arguments_leave_the_model_s_hash_alone(tiny_model, tmp_path):
    """A Trainer checkpoint folder holds training_args.bin and optimizer.pt beside the weights: they
    do not change what from_pretrained loads, so they do not change the run key either."""
    shutil.copytree(tiny_model, tmp_path / "mybert")
    before = models.files_hash(tmp_path / "mybert")
    (tmp_path / "mybert" / "training_args.bin").write_bytes(b"arguments")
    (tmp_path / "mybert" / "optimizer.pt").write_bytes(b"moments")
    assert models.files_hash(tmp_path / "mybert") == before
    (tmp_path / "mybert" / "pytorch_model.bin").write_bytes(b"other weights")
    assert models.files_hash(tmp_path / "mybert") != before


def test_a_tokenizer_saved_again_into_its_folder_is_the_one_a_run_trains_with(tiny_model, tmp_path):
    """A notebook re-saves a tokenizer into the model's folder: the next run in the same process
    got a new key for the new files but trained with the tokenizer loaded before."""
    shutil.copytree(tiny_model, tmp_path / "mybert")
    before = models.resolve(str(tmp_path / "mybert"))
    identity = before.describe()
    tokenizer = models.load_tokenizer(before)
    vocab = tokenizer.get_vocab()
    vocabulary = sorted(vocab, key=vocab.get)
    river, said = vocab["river"], vocab["said"]
    assert tokenizer("river")["input_ids"][1] == river
    vocabulary[river], vocabulary[said] = "said", "river"
    models.word_piece_tokenizer(vocabulary).save_pretrained(tmp_path / "mybert")
    after = models.resolve(str(tmp_path / "mybert"))
    assert after.describe() != identity
    assert models.load_tokenizer(after)("river")["input_ids"][1] == said


def test_a_tiny_bert_build_cut_off_while_saving_the_weights_is_built_again(tmp_path, monkeypatch):
    import safetensors.torch
    import transformers

    save = transformers.BertModel.save_pretrained

    def disk_full_midway(self, folder, **kwargs):
        (Path(folder) / "model.safetensors").write_bytes(b"\x00" * 100)  # a cut-off weights file
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(transformers.BertModel, "save_pretrained", disk_full_midway)
    path = tmp_path / "tiny-bert"
    with pytest.raises(OSError, match="No space left"):
        models.build_tiny_bert(path)
    assert not (path / "model.safetensors").exists()
    monkeypatch.setattr(transformers.BertModel, "save_pretrained", save)
    models.build_tiny_bert(path)
    assert safetensors.torch.load_file(path / "model.safetensors")  # whole, and loadable
    assert [p.name for p in path.iterdir() if p.name.startswith(".building")] == []


def test_only_a_finished_glue_download_counts_as_cached(tmp_path, monkeypatch):
    """An interrupted download must not stop an offline claim from skipping: it would fail instead."""
    from datasets import config as datasets_config

    monkeypatch.setattr(datasets_config, "HF_DATASETS_CACHE", str(tmp_path))
    monkeypatch.setattr(profiles, "hub_reachable", lambda: False)
    version = tmp_path / "nyu-mll___glue" / "rte" / "0.0.0"
    (version / "0a1b2c.incomplete").mkdir(parents=True)
    (version / "0a1b2c.incomplete" / "dataset_info.json").write_text("{}")
    assert not profiles.glue_available("rte")
    (version / "0a1b2c").mkdir()
    assert not profiles.glue_available("rte")  # no dataset_info.json yet
    (version / "0a1b2c" / "dataset_info.json").write_text("{}")
    assert profiles.glue_available("rte") and not profiles.glue_available("mrpc")


def test_a_claim_that_needs_wikitext2_skips_without_it_instead_of_failing_after_training(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from datasets import config as datasets_config

    import stabench

    monkeypatch.setattr(datasets_config, "HF_DATASETS_CACHE", str(tmp_path))
    monkeypatch.setattr(profiles, "hub_reachable", lambda: False)
    spec = SimpleNamespace(requires=("wikitext-2",), arms=())
    (missing,) = profiles.missing_requirements(spec)
    assert missing.startswith("dataset Salesforce/wikitext/wikitext-2-raw-v1 (not in the local cache and ")
    (tmp_path / "Salesforce___wikitext" / "wikitext-2-raw-v1" / "0.0.0" / "abc").mkdir(parents=True)
    (tmp_path / "Salesforce___wikitext" / "wikitext-2-raw-v1" / "0.0.0" / "abc" / "dataset_info.json").write_text("{}")
    assert profiles.missing_requirements(spec) == []
    for bad in (["gpu"], "cuda"):
        with pytest.raises(ValueError, match=r"^test_models.py:\d+: claim requires=.* is invalid; expected a list "
                                             r"naming any of: cuda, wikitext-2$"):
            stabench.claim(task="polarity", model="tiny-bert", recipe="bert-default", requires=bad)


@pytest.mark.parametrize("requires", ["", "cuda", ["gpu"]])
def test_requirements_are_a_list_of_known_names(requires):
    with pytest.raises(ValueError, match=r"^claim requires=.* is invalid; expected a list naming any of: cuda, "
                                         r"wikitext-2$"):
        profiles.check_requirements(requires)
    profiles.check_requirements([])
    profiles.check_requirements(("cuda", "wikitext-2"))


@pytest.mark.parametrize("value, offline", [("1", True), ("ON", True), ("yes", True), ("0", False), ("", False)])
def test_hub_offline_is_read_as_huggingface_hub_reads_it(monkeypatch, value, offline):
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert profiles.hub_reason().endswith("HF_HUB_OFFLINE is set") == offline


def test_a_hub_mirror_is_probed_on_its_own_port(monkeypatch):
    """HF_ENDPOINT=http://host:8080 is a mirror on port 8080, not a hub on 443 (loopback only here)."""
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        try:
            monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
            monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
            profiles.hub_reachable.cache_clear()
            assert profiles.hub_reachable()
            monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:1")  # nothing listens there
            profiles.hub_reachable.cache_clear()
            assert not profiles.hub_reachable()
        finally:
            profiles.hub_reachable.cache_clear()


@pytest.mark.parametrize("endpoint, address", [("http://mirror.local", ("mirror.local", 80)),
                                               ("https://mirror.local", ("mirror.local", 443)),
                                               ("http://mirror.local:8080", ("mirror.local", 8080))])
def test_a_hub_endpoint_is_probed_on_its_scheme_s_port(monkeypatch, endpoint, address):
    import contextlib

    probed = []
    monkeypatch.setattr(profiles.socket, "create_connection",
                        lambda where, timeout: probed.append(where) or contextlib.nullcontext())
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    profiles.hub_reachable.cache_clear()
    try:
        assert profiles.hub_reachable() and probed == [address]
    finally:
        profiles.hub_reachable.cache_clear()


def test_a_claim_missing_a_hub_model_and_glue_data_says_each_once(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from datasets import config as datasets_config

    monkeypatch.setattr(datasets_config, "HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(profiles, "hub_reachable", lambda: False)
    arm = SimpleNamespace(model="someorg/not-cached", task="rte")
    spec = SimpleNamespace(requires=(), arms=(arm, arm))  # two arms of one model and task
    missing = profiles.missing_requirements(spec)
    assert [reason.split(" (")[0] for reason in missing] == ["model 'someorg/not-cached' from the Hugging Face hub",
                                                             "dataset nyu-mll/glue/rte"]


def test_the_recipe_dropout_replaces_a_classifier_dropout_the_checkpoint_sets(tmp_path):
    import json

    import torch

    path = models.build_tiny_bert(tmp_path / "bert")
    config = json.loads((path / "config.json").read_text())
    config["classifier_dropout"] = 0.3
    (path / "config.json").write_text(json.dumps(config))
    model = models.load_model(models.resolve(str(path)), 2, dropout=0.1)
    assert {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)} == {0.1}
    model = models.load_model(models.resolve(str(path)), 2, dropout=None)  # None: the checkpoint's own
    assert model.config.classifier_dropout == 0.3 and model.classifier is not None
    assert {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)} == {config["hidden_dropout_prob"], 0.3}


def test_a_gpu_claim_skipped_under_pytest_says_it_runs_here_at_toy_scale(monkeypatch):
    """The plugin's skip reason (the default) offers the toy profile; a script's check_claim, which
    has no such option, does not."""
    from types import SimpleNamespace

    monkeypatch.setattr(profiles, "_cuda_available", lambda: False)
    spec = SimpleNamespace(requires=("cuda",), arms=())
    (skipped,) = profiles.missing_requirements(spec)
    assert skipped.startswith("a CUDA GPU (") and skipped.endswith(", or use --stabench-profile=toy here)")
    (scripted,) = profiles.missing_requirements(spec, toy_option=None)
    assert scripted == skipped.replace(", or use --stabench-profile=toy here", "")
