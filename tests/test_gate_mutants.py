"""Gaps found by a mutation hunt on stabench.gate: what_changed, variants, studies, compare_*."""
import dataclasses

from stabench.gate import (check, compare_sources, compare_studies, group_studies, name_studies, pick_variant,
                           what_changed)
from test_gate import GOOD, _run  # tests/ is on sys.path, as pytest puts it


def test_a_current_side_grown_past_its_baseline_says_only_the_seeds_not_same_runs():
    """The baseline's runs plus new seeds of the same stack: not the same runs (kills wc_same_subset)."""
    runs = [_run(s, v) for s, v in enumerate(GOOD)]
    assert what_changed(runs[:4], runs) == "only the seeds (0-3 -> 0-7)"
    assert check("c", runs, runs[:4]).changed == "only the seeds (0-3 -> 0-7)"


def test_a_gpu_run_s_cpu_model_is_not_named_as_a_change():
    """Another CPU can end a chaotic CPU run differently; a GPU run's host CPU is no change
    (kills wc_cpu_no_devcheck)."""
    def on_gpu(runs, cpu):
        return [dataclasses.replace(r, environment={**r.environment, "device_kind": "cuda", "cpu_model": cpu})
                for r in runs]

    baseline = [_run(s, v) for s, v in enumerate(GOOD)]
    current = [_run(s, v, torch="2.14.0") for s, v in enumerate(GOOD)]
    assert what_changed(on_gpu(baseline, "Intel Xeon"), on_gpu(current, "AMD EPYC")) == "torch 2.13.0 -> 2.14.0"


def test_a_commit_recorded_on_one_side_only_is_not_named_as_a_change():
    """Runs stored before the project's commit was recorded say nothing about it (kills wc_code_any)."""
    baseline = [_run(s, v) for s, v in enumerate(GOOD)]
    current = [dataclasses.replace(_run(s, v, torch="2.14.0"), environment={
        **_run(s, v, torch="2.14.0").environment, "project_git_commit": "b" * 40}) for s, v in enumerate(GOOD)]
    assert what_changed(baseline, current) == "torch 2.13.0 -> 2.14.0"


def test_old_local_folder_records_keyed_by_weights_are_compared_each_with_its_own_past():
    """Runs stored before 2026-12-04 name a folder's weights (weights_sha256): two folders of one name
    stay two models (kills kp_model_weights)."""
    def of(runs, weights):
        return [dataclasses.replace(r, model={"name": "ckpt", "revision": None, "weights_sha256": weights})
                for r in runs]

    mine = of([_run(s, v) for s, v in enumerate(GOOD[:5])], "aaaa")
    other = of([dataclasses.replace(_run(s, 0.5), key=f"o{s}") for s in range(8)], "bbbb")  # more runs
    result = check("c", of([_run(s, v, torch="2.14.0") for s, v in enumerate(GOOD[:5])], "aaaa"), mine + other)
    assert result.baseline_keys == tuple(r.key for r in mine) and result.verdict == "ok"


def test_a_lone_run_of_the_current_variant_does_not_make_the_note_claim_a_machine_preference():
    """The baseline holds the old stack on this machine and one stray run of the current variant: the
    old stack is taken for its runs, not for its machine (kills pv_onmachine_others)."""
    old = [_run(s, v, torch="2.11.0") for s, v in enumerate(GOOD)]
    current = [_run(s, v) for s, v in enumerate(GOOD)]
    (result,) = compare_sources(old + current[:1], current)
    assert result.changed == "torch 2.11.0 -> 2.13.0"
    assert result.baseline_note.endswith("compared with torch 2.11.0, the one with the most runs besides the "
                                         "current runs' own")


def test_rows_of_one_study_on_two_models_of_one_name_say_which_model_each_holds():
    """Two revisions of a hub model, two local folders of one name: each row says its own, briefly
    (kills ta_model_name, ta_model_notrunc)."""
    def of(model, seeds):
        return [dataclasses.replace(_run(s, GOOD[s]), key=f"{model}-{s}", model=model) for s in seeds]

    revisions = (of({"name": "m", "revision": "0123456789abcdef"}, range(2))
                 + of({"name": "m", "revision": "fedcba9876543210"}, range(2)))
    assert sorted(label for label, _ in group_studies(name_studies(revisions))) == [
        "t / m / r [model 0123456789ab]", "t / m / r [model fedcba987654]"]
    folders = (of({"name": "ckpt", "revision": None, "files_sha256": "a" * 64}, range(2))
               + of({"name": "ckpt", "revision": None, "files_sha256": "b" * 64}, range(2)))
    assert sorted(label for label, _ in group_studies(name_studies(folders))) == [
        f"t / ckpt / r [model {'a' * 12}]", f"t / ckpt / r [model {'b' * 12}]"]


def test_a_row_names_its_data_by_a_short_fingerprint():
    """A task whose data changed: each row says which data, as 12 characters of its fingerprint
    (kills ta_data_notrunc)."""
    runs = [dataclasses.replace(_run(s, GOOD[s]), key=f"{data}-{s}", task={"name": "t", "train_size": None,
                                                                           "fingerprint": data * 64})
            for data in "ab" for s in range(2)]
    assert sorted(label for label, _ in group_studies(name_studies(runs))) == [
        f"t / m / r [data {'a' * 12}]", f"t / m / r [data {'b' * 12}]"]


def test_two_subsamples_of_one_size_are_other_data_by_design_not_a_changed_version():
    """Recipes trained on different subsample seeds of 8 examples: no row is labelled as if the task's
    data had changed (kills do_no_subseed)."""
    def on(recipe, subsample_seed, fingerprint):
        return [dataclasses.replace(_run(s, GOOD[s], recipe=recipe), key=f"{recipe}-{s}", task={
            "name": "t", "train_size": 8, "subsample_seed": subsample_seed, "fingerprint": fingerprint})
            for s in range(2)]

    runs = on("r1", 1, "aaaa") + on("r2", 2, "bbbb")
    assert sorted(label for label, _ in group_studies(name_studies(runs))) == ["t / 8 / m / r1", "t / 8 / m / r2"]


def test_compare_against_a_recipe_of_one_stack_only_pairs_it_there_and_never_says_it_is_missing():
    """``summary --compare-against s`` where s ran on one of two stacks: the other stack has no pair,
    which is no error (kills cs_found_last)."""
    runs = [_run(s, v - shift, recipe=recipe, torch="2.11.0") for recipe, shift in (("r", 0), ("s", 0.2))
            for s, v in enumerate(GOOD[:5])]
    runs += [_run(s, v - shift, recipe=recipe) for recipe, shift in (("r", 0), ("u", 0.1))
             for s, v in enumerate(GOOD[:5])]
    studies = group_studies(name_studies(runs))
    against = compare_studies(studies, against="s")
    assert [(c["name_a"], c["name_b"]) for c in against] == [("r [torch 2.11.0]", "s"), ("s", "r [torch 2.11.0]")]


def _later(runs, month):
    return [dataclasses.replace(r, finished_at=r.finished_at.replace("2026-01", f"2026-{month}")) for r in runs]


def test_a_store_of_two_tasks_compared_with_itself_compares_each_study_with_its_own_runs():
    """A baseline holding one recipe's study of task u (older stack) and of task t (newer): the
    current side is the whole baseline, so each study is its own runs, never 'no baseline'
    (kills src_no_instudy)."""
    u = [dataclasses.replace(r, key=f"u-{r.key}", task={"name": "u", "train_size": None})
         for r in (_run(s, v, torch="2.11.0") for s, v in enumerate(GOOD[:4]))]
    t = _later([_run(s, v) for s, v in enumerate(GOOD[:4])], "02")
    everything = u + t
    for current_is_store in (True, False):
        rows = compare_sources(everything, everything, current_is_store=current_is_store)
        assert sorted((r.claim, r.changed, r.verdict) for r in rows) == [
            ("t / m / r", "same runs", "ok"), ("u / m / r", "same runs", "ok")]


def test_a_variant_begun_first_is_the_one_the_other_is_judged_against():
    """A store holding two stacks' runs of one study: the one whose runs began first is the past,
    though its last run finished after the other's (kills src_began_max)."""
    old = [_run(s, v, torch="2.11.0") for s, v in enumerate(GOOD)]
    old[-1] = _later(old[-1:], "05")[0]  # one seed re-run after the new stack's runs
    new = _later([_run(s, v - 0.3 if s % 2 else v - 0.05) for s, v in enumerate(GOOD)], "03")
    everything = old + new
    rows = compare_sources(everything, everything, current_is_store=True)
    assert sorted((r.changed, r.verdict) for r in rows) == [("same runs", "ok"),
                                                           ("torch 2.11.0 -> 2.13.0", "REGRESSED")]


def test_a_renamed_recipe_of_the_same_content_is_no_unmatched_baseline_study():
    """The baseline's ``old`` is the current ``new`` (same content): it matched, so no note names it
    (kills um_no_current)."""
    from stabench.gate import unmatched_baseline_studies

    baseline = [_run(s, v, recipe="old", torch="2.11.0") for s, v in enumerate(GOOD)]
    current = [dataclasses.replace(_run(s, v, recipe="new"), recipe_hash="h-old") for s, v in enumerate(GOOD)]
    results = compare_sources(baseline, current)
    assert [(r.claim, r.baseline.n) for r in results] == [("t / m / new | old", 8)]
    assert unmatched_baseline_studies(baseline, current, results) == []


def test_a_baseline_study_compared_on_some_of_its_seeds_is_not_called_uncompared():
    """The pytest gate compares a baseline study on the current seeds only: that study was compared;
    a study of another task or model was not asked about (kills uc_partial, uc_all_trained)."""
    from stabench.gate import uncompared_studies

    baseline = [_run(s, v) for s, v in enumerate(GOOD)] + [_run(s, v, recipe="other") for s, v in enumerate(GOOD)]
    elsewhere = [dataclasses.replace(r, key=f"x-{r.key}", task={"name": "x", "train_size": None}) for r in baseline]
    compared = {r.key for r in baseline[:4]}
    assert uncompared_studies(baseline + elsewhere, compared, {("t", None, "m")}) == ["t / m / other"]


def _with_recipe(runs, recipe, tag=""):
    return [dataclasses.replace(r, key=f"{r.key}-{recipe.hash}{tag}", recipe=recipe.to_dict(), recipe_hash=recipe.hash)
            for r in runs]


def test_three_changed_recipe_fields_are_all_named_with_no_more_to_count():
    """Up to three fields are shown; exactly three leave none over (kills rc_more_ge)."""
    from stabench.recipes import get_recipe

    runs = [_run(s, v) for s, v in enumerate(GOOD)]
    mine = get_recipe("bert-default-bc", name="mine")
    assert what_changed(_with_recipe(runs, mine), _with_recipe(runs, mine.replace(lr=1e-4, epochs=4, dropout=0.2))) \
        == "recipe content (dropout 0.1 -> 0.2, epochs 3 -> 4, lr 2e-05 -> 0.0001)"


def test_a_side_holding_two_recipe_versions_names_no_one_field_change():
    """Runs of two versions on one side: no single field change describes them (kills rc_any_all, rc_never_multi)."""
    from stabench.recipes import get_recipe

    runs = [_run(s, v) for s, v in enumerate(GOOD)]
    mine = get_recipe("bert-default-bc", name="mine")
    two = _with_recipe(runs[:4], mine.replace(lr=1e-4)) + _with_recipe(runs[4:], mine.replace(epochs=4))
    assert what_changed(_with_recipe(runs, mine), two) == "recipe content"
    assert what_changed(two, _with_recipe(runs, mine)) == "recipe content"


def test_of_two_baseline_variants_of_as_many_runs_the_one_run_most_recently_is_compared():
    """A tie is broken by the newest run: torch 2.12.0 re-ran a seed in May, after all of 2.11.0's runs
    in March, though 2.12.0 began first (kills pv_min_time)."""
    a = [_run(s, v, torch="2.12.0") for s, v in enumerate(GOOD[:3])] + _later([_run(3, GOOD[3], torch="2.12.0")], "05")
    b = _later([_run(s, v, torch="2.11.0") for s, v in enumerate(GOOD[:4])], "03")
    chosen, _, which = pick_variant(a + b)
    assert {r.environment["torch"] for r in chosen} == {"2.12.0"}
    assert which == "torch 2.12.0, the one with the most runs (the newest of a tie)"


def test_a_seed_stored_twice_on_the_current_side_counts_once_with_its_newest_run():
    """``stabench compare`` and ``summary`` read one run per seed: a re-run replaces, never doubles
    (kills gs_no_dedupe)."""
    runs = [_run(s, v) for s, v in enumerate(GOOD[:4])]
    rerun = _later([dataclasses.replace(_run(0, 0.5), key="rerun")], "02")
    ((label, study),) = group_studies(name_studies(runs + rerun))
    assert label == "t / m / r" and [r.key for r in study] == ["rerun"] + [r.key for r in runs[1:]]
    baseline = [_run(s, v, torch="2.11.0") for s, v in enumerate(GOOD[:4])]
    (result,) = compare_sources(baseline, runs + rerun)
    assert result.current.n == 4 and "rerun" in result.current_keys and runs[0].key not in result.current_keys


def test_studies_of_two_seeds_are_compared():
    """Two seeds a side is what a test needs (kills cs_ge3)."""
    runs = [_run(s, v - shift, recipe=recipe) for recipe, shift in (("r", 0), ("s", 0.2))
            for s, v in enumerate(GOOD[:2])]
    every = compare_studies(group_studies(name_studies(runs)))
    assert sorted((c["name_a"], c["name_b"], c["n_a"], c["n_b"]) for c in every) == [("r", "s", 2, 2), ("s", "r", 2, 2)]


def test_an_edited_recipe_linked_by_another_name_to_its_old_content_is_compared_with_its_past():
    """A was edited (h-A2); B now holds A's old content.  The current side links A and B: A's new
    version is still compared with A's baseline runs, never 'no baseline' (kills src_base_unlinked)."""
    baseline = [_run(s, v, recipe="A", torch="2.11.0") for s, v in enumerate(GOOD)]
    edited = [dataclasses.replace(_run(s, v, recipe="A"), recipe_hash="h-A2") for s, v in enumerate(GOOD)]
    copied = [dataclasses.replace(_run(s, v, recipe="B"), recipe_hash="h-A") for s, v in enumerate(GOOD)]
    results = {r.claim: r for r in compare_sources(baseline, edited + copied)}
    assert {claim: (r.verdict, r.baseline.n) for claim, r in results.items()} == {
        "t / m / A | B [recipe content h-A2]": ("ok", 8), "t / m / A | B [recipe content h-A]": ("ok", 8)}
    assert results["t / m / A | B [recipe content h-A2]"].changed == "torch 2.11.0 -> 2.13.0, recipe content"


def test_two_variants_begun_at_the_same_moment_are_each_compared_with_itself():
    """A store of two stacks whose first runs finished in the same second (two machines in parallel):
    neither was stored before the other, so each is its own baseline (kills src_le)."""
    old = [_run(s, v, torch="2.11.0") for s, v in enumerate(GOOD)]
    new = [_run(s, v - 0.3 if s % 2 else v - 0.05) for s, v in enumerate(GOOD)]
    everything = old + new
    rows = compare_sources(everything, everything, current_is_store=True)
    assert sorted((r.changed, r.verdict) for r in rows) == [("same runs", "ok"), ("same runs", "ok")]


def test_a_baseline_study_of_the_same_name_that_matched_no_run_is_named_as_unmatched():
    """The baseline's t / m / r scored another metric, so the current t / m / r found no baseline: the
    note names the baseline's study, as one none matched (kills um_no_keys_filter)."""
    from stabench.gate import unmatched_baseline_studies

    baseline = [dataclasses.replace(_run(s, v, torch="2.11.0"), metrics={"f1": v}, primary_metric="f1")
                for s, v in enumerate(GOOD)]
    current = [_run(s, v) for s, v in enumerate(GOOD)]
    results = compare_sources(baseline, current)
    assert [r.verdict for r in results] == ["no baseline"]
    assert unmatched_baseline_studies(baseline, current, results) == ["t / m / r"]


def test_baseline_study_labels_name_a_recipe_with_its_aliases_in_order():
    """What a baseline holds is listed as its studies' labels (a name and its aliases), sorted
    (kills uc_raw_name, st_raw_name, bs_unsorted)."""
    from stabench.gate import baseline_studies, uncompared_studies

    baseline = [dataclasses.replace(_run(s, v, recipe=name), recipe_aliases=[f"{name}-alias"])
                for name in "edcba" for s, v in enumerate(GOOD[:2])]
    labels = [f"t / m / {name} | {name}-alias" for name in "abcde"]
    assert baseline_studies(baseline) == labels
    assert uncompared_studies(baseline, set(), {("t", None, "m")}) == labels
