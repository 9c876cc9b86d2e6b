"""Selection of the instances to drop: policies, caps, per-class floors, auto's refit comparison, reports."""
import json
import math

import numpy as np
import pytest

from keras_itl.errors import UserError
from keras_itl.selection import Fold, Policy, parse_policy, policy_help, select_drops
from keras_itl.selection.auto import family_gate

# no caps or floors, and auto by the lowest measured loss alone (no margin, no paired test): the bare rules
LOOSE = dict(max_drop_fraction=0.99, min_class_keep_fraction=0.0, min_per_class=0, auto_margin=0.0, auto_min_z=0.0)


def ids_for(n):
    """Ids whose sort order is the index order, so ties by id resolve to the lower index."""
    return [f"x{i:03d}" for i in range(n)]


def select(delta, labels=None, *, policy="sign", class_names=None, **settings):
    """select_drops on generated ids, with no caps or floors unless ``settings`` set them."""
    delta = np.asarray(delta, dtype=float)
    labels = np.zeros(len(delta), dtype=int) if labels is None else np.asarray(labels)
    class_names = class_names or [str(c) for c in range(labels.max() + 1)]
    return select_drops(ids_for(len(delta)), labels, delta, policy=policy, class_names=class_names,
                        **(LOOSE | settings))


def harmful_first(delta, k=None):
    """Ids of the k most harmful instances (all negatives when k is None), computed independently."""
    negatives = sorted((d, i) for i, d in zip(ids_for(len(delta)), delta) if d < 0)
    return [i for _, i in negatives[:k]]


def losses_by_drop_set(true_harmful):
    """A refit stand-in: each truly harmful id dropped lowers the loss by 0.01, any other raises it by 0.02."""
    def measure(keep):
        dropped = set(np.array(ids_for(len(keep)))[~keep])
        return 1.0 - 0.01 * len(dropped & true_harmful) + 0.02 * len(dropped - true_harmful)
    return measure


# --- policies ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["sign", "auto", "fraction:0.05", "fraction:0.5"])
def test_policy_text_round_trips(text):
    assert str(parse_policy(text)) == text


def test_policy_text_is_normalised():
    policy = parse_policy("  Fraction:0.10 ")
    assert policy == Policy("fraction", 0.1)
    assert str(policy) == "fraction:0.1"


@pytest.mark.parametrize("text", ["", "signs", "fraction", "top:5", "sign:0.1"])
def test_unknown_policy_lists_the_forms(text):
    with pytest.raises(UserError, match="fraction:P"):
        parse_policy(text)


@pytest.mark.parametrize("text", ["fraction:", "fraction:abc", "fraction:0", "fraction:1", "fraction:-0.1",
                                  "fraction:1.5", "fraction:nan"])
def test_fraction_out_of_range_or_not_a_number(text):
    with pytest.raises(UserError, match="fraction"):
        parse_policy(text)


def test_policy_help_names_every_policy():
    assert all(name in policy_help() for name in ("sign", "fraction:P", "auto", "loss:P", "cleanlab", "random:P"))


def test_sign_drops_exactly_the_negative_ones_most_harmful_first_ties_by_id():
    ids = ["h", "f", "z", "a", "c", "b", "e", "g"]
    delta = [0.3, -0.1, 0.0, -0.5, 0.2, -0.1, 1e-9, -2e-3]
    result = select_drops(ids, np.zeros(8, dtype=int), delta, policy="sign", class_names=["only"], **LOOSE)
    assert result.drop_ids == ["a", "b", "f", "g"]
    assert result.chosen == result.policy == "sign"
    assert result.candidates == []
    assert result.reasons["a"] == "predicted_delta_val_loss -0.5 < 0 (sign)"


def test_fraction_drops_the_most_harmful_in_order():
    delta = np.random.default_rng(3).permutation(np.linspace(-1.0, 1.0, 40))
    result = select(delta, policy="fraction:0.1")
    assert result.drop_ids == harmful_first(delta, 4)
    assert "among the 10% most harmful (rank 1," in result.reasons[result.drop_ids[0]]


def test_fraction_rounds_half_up():
    assert len(select(-np.arange(1.0, 11.0), policy="fraction:0.25").drop_ids) == 3


def test_fraction_never_drops_an_instance_predicted_to_help():
    delta = [0.4, -0.2, 0.0, 0.1, -0.3, 0.5, 0.2, 0.3, 0.6, 0.7]
    result = select(delta, policy="fraction:0.5")
    assert result.drop_ids == ["x004", "x001"]
    assert result.notes == ["fraction:0.5 asked for 5 instances but there are only 2 harmful instances; "
                            "instances predicted to help are never dropped"]


# --- caps and floors ---------------------------------------------------------------------------------------


def drop_all_you_can(keep):
    """A refit stand-in under which the more is dropped, the lower the loss."""
    return float(keep.sum())


@pytest.mark.parametrize("policy", ["sign", "fraction:0.5", "auto"])
def test_max_drop_fraction_caps_every_policy(policy):
    delta = -np.random.default_rng(0).uniform(0.1, 1.0, 20)
    result = select(delta, policy=policy, max_drop_fraction=0.29, measure=drop_all_you_can)
    assert result.drop_ids == harmful_first(delta, 5)
    assert any(note.startswith("max_drop_fraction 0.29 capped") for note in result.notes)


def test_limits_use_the_fraction_as_written():
    # 0.29 * 100 and 0.07 * 100 are 28.999999999999996 and 7.000000000000001 in floating point.
    delta = -np.linspace(1.0, 2.0, 100)
    assert len(select(delta, max_drop_fraction=0.29).drop_ids) == 29
    assert select(delta, min_class_keep_fraction=0.07).kept_per_class == {"0": 7}


def test_class_floor_skips_and_the_walk_goes_on():
    labels = [0] * 10 + [1] * 10
    delta = np.r_[-np.linspace(2.0, 1.0, 10), -np.linspace(0.9, 0.1, 5), np.full(5, 0.5)]
    result = select(delta, labels, class_names=["cat", "dog"], min_class_keep_fraction=0.5)
    assert result.drop_ids == harmful_first(delta, 5) + harmful_first(delta)[10:15]
    assert result.kept_per_class == {"cat": 5, "dog": 5}
    assert result.notes == ["class 'cat' kept at its floor of 5: 5 harmful instances not dropped"]


@pytest.mark.parametrize("policy", ["sign", "fraction:0.9", "auto"])
def test_a_class_is_never_emptied_even_when_all_its_instances_are_harmful(policy):
    labels = [0, 0, 0, 1, 1, 1, 2]
    result = select(-np.ones(7), labels, policy=policy, min_per_class=1, measure=drop_all_you_can)
    assert result.kept_per_class == {"0": 1, "1": 1, "2": 1}


def test_notes_blame_the_floor_before_the_cap():
    labels = [0, 0, 1, 0, 1, 1, 0, 1, 1, 1]  # in harmful order
    result = select(-np.linspace(2.0, 1.0, 10), labels, class_names=["a", "b"], max_drop_fraction=0.3,
                    min_class_keep_fraction=0.5)
    assert result.drop_ids == ids_for(3)
    assert result.notes == ["class 'a' kept at its floor of 2: 2 harmful instances not dropped",
                            "max_drop_fraction 0.3 capped the sign set at 3 drops: 5 harmful instances not dropped"]


def test_min_per_class_above_the_class_size_keeps_the_whole_class():
    result = select(-np.ones(6), [0, 0, 1, 1, 1, 1], min_per_class=3)
    assert result.kept_per_class == {"0": 2, "1": 3}


# --- what the result reports -------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["sign", "fraction:0.3", "auto"])
def test_reasons_exist_for_every_dropped_id_and_only_those(policy):
    delta = np.random.default_rng(1).normal(size=30)
    result = select(delta, policy=policy, measure=drop_all_you_can)
    assert result.drop_ids
    assert set(result.reasons) == set(result.drop_ids)
    for i in result.drop_ids:
        assert f"predicted_delta_val_loss {delta[ids_for(30).index(i)]:.4g}" in result.reasons[i]


def test_class_counts_list_every_class_and_add_up_to_its_size():
    labels = np.array([0, 1, 1, 3, 3, 3, 1, 0])
    result = select(np.linspace(-1.0, 1.0, 8), labels, class_names=["a", "b", "c", "d"])
    assert set(result.dropped_per_class) == set(result.kept_per_class) == {"a", "b", "c", "d"}
    sizes = np.bincount(labels, minlength=4)
    assert [result.dropped_per_class[c] + result.kept_per_class[c] for c in "abcd"] == list(sizes)
    assert result.dropped_per_class["c"] == 0
    assert sum(result.dropped_per_class.values()) == len(result.drop_ids) > 0


def test_keep_mask_agrees_with_drop_ids_in_any_order():
    delta = np.random.default_rng(2).normal(size=25)
    result = select(delta)
    shuffled = np.random.default_rng(5).permutation(ids_for(25))
    mask = result.keep_mask(shuffled)
    assert mask.dtype == bool
    assert sorted(shuffled[~mask]) == sorted(result.drop_ids)


def test_to_dict_survives_json():
    delta = np.random.default_rng(4).normal(size=30)
    result = select(delta, np.arange(30) % 3, policy="auto", measure=drop_all_you_can)
    loaded = json.loads(json.dumps(result.to_dict()))
    assert loaded["drop_ids"] == result.drop_ids
    assert loaded["dropped_per_class"] == result.dropped_per_class
    assert [c["name"] for c in loaded["candidates"]] == [c.name for c in result.candidates]


# --- auto --------------------------------------------------------------------------------------------------


def test_auto_picks_the_candidate_with_the_lowest_measured_loss():
    delta = np.random.default_rng(6).permutation(np.linspace(-1.0, 0.5, 100))
    true_harmful = set(harmful_first(delta, 10))
    measure = losses_by_drop_set(true_harmful)
    result = select(delta, policy="auto", measure=measure, max_drop_fraction=0.5)
    assert result.policy == "auto"
    assert result.chosen == "fraction:0.1"
    assert set(result.drop_ids) == true_harmful
    assert [c.name for c in result.candidates] == ["none", "sign", "fraction:0.05", "fraction:0.1", "fraction:0.2"]
    for candidate in result.candidates:
        assert candidate.val_loss == measure(~np.isin(ids_for(100), candidate.drop_ids))
    assert all("auto chose fraction:0.1" in reason for reason in result.reasons.values())


def test_auto_can_choose_to_drop_nothing():
    delta = np.random.default_rng(7).normal(size=40)
    result = select(delta, policy="auto", measure=losses_by_drop_set(set()))
    assert result.chosen == "none"
    assert result.drop_ids == [] and result.reasons == {}
    assert result.keep_mask(ids_for(40)).all()
    assert any("kept every instance" in note for note in result.notes)
    assert len(result.candidates) == 5


def test_auto_ties_go_to_fewer_drops():
    delta = -np.linspace(1.0, 2.0, 100)
    result = select(delta, policy="auto", measure=lambda keep: 1.0 if keep.all() else 0.5)
    assert result.chosen == "fraction:0.05"
    assert len(result.drop_ids) == 5


def test_auto_measures_each_distinct_drop_set_once():
    delta = np.full(20, 0.1)
    delta[[4, 11]] = -0.3
    masks = []

    def measure(keep):
        masks.append(keep.copy())
        return 1.0 - 0.1 * (~keep).sum()

    result = select(delta, policy="auto", measure=measure)
    assert [c.name for c in result.candidates] == ["none", "sign", "fraction:0.05"]
    assert len(masks) == 3
    assert [np.flatnonzero(~m).tolist() for m in masks] == [[], [4, 11], [4]]
    assert result.chosen == "sign"
    assert "fraction:0.1, fraction:0.2 gave the same drop set as sign; measured once as sign" in result.notes


def test_measure_is_ignored_by_fixed_policies():
    calls = []
    select(np.linspace(-1.0, 1.0, 10), policy="fraction:0.2", measure=lambda keep: calls.append(keep) or 0.0)
    assert calls == []


# --- bad input ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("change, message", [
    (dict(labels=[0, 0, 1]), "same length"),
    (dict(predicted_delta=[0.1, np.nan, -0.2, 0.3]), "NaN"),
    (dict(predicted_delta=[0.1, -np.inf, -0.2, 0.3]), "infinite"),
    (dict(labels=[0, 1, 2, 1]), "class indices"),
    (dict(labels=[0.0, 1.0, 1.0, 0.0]), "integer"),
    (dict(ids=["a", "b", "a", "c"]), "unique"),
    (dict(class_names=["x", "x"]), "distinct"),
    (dict(policy="fraction:2"), "between 0 and 1"),
    (dict(policy="best"), "unknown selection policy"),
    (dict(policy="auto"), "auto needs a refit"),
    (dict(policy="auto", measure=lambda keep: float("nan")), "NaN validation loss"),
    (dict(policy="auto", auto_fractions=(0.1, 1.2), measure=drop_all_you_can), "between 0 and 1"),
    (dict(max_drop_fraction=1.0), "max_drop_fraction"),
    (dict(max_drop_fraction=-0.1), "max_drop_fraction"),
    (dict(min_class_keep_fraction=1.5), "min_class_keep_fraction"),
    (dict(min_per_class=-1), "min_per_class"),
    (dict(min_per_class=1.5), "min_per_class"),
])
def test_bad_input_is_a_user_error(change, message):
    arguments = dict(ids=["a", "b", "c", "d"], labels=[0, 1, 1, 0], predicted_delta=[0.1, -0.4, -0.2, 0.3],
                     policy="sign", class_names=["x", "y"]) | change
    with pytest.raises(UserError, match=message):
        select_drops(arguments.pop("ids"), arguments.pop("labels"), arguments.pop("predicted_delta"), **arguments)


# --- property: limits hold for every policy on random data -------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_caps_and_floors_hold_for_every_policy_on_random_data(seed):
    rng = np.random.default_rng(seed)
    n = 200
    labels = rng.choice(5, size=n, p=[0.5, 0.2, 0.15, 0.1, 0.05])
    delta = rng.normal(-0.2, 1.0, n)
    delta[rng.choice(n, 20)] = -0.5  # ties, broken by id
    limits = dict(max_drop_fraction=rng.uniform(0.0, 0.6), min_class_keep_fraction=rng.uniform(0.0, 1.0),
                  min_per_class=int(rng.integers(0, 4)))
    weights = rng.normal(size=n)
    sizes = np.bincount(labels, minlength=5)
    floors = [min(s, max(limits["min_per_class"], math.ceil(limits["min_class_keep_fraction"] * s))) for s in sizes]
    budget = math.floor(limits["max_drop_fraction"] * n)
    index = {i: k for k, i in enumerate(ids_for(n))}
    for policy in ["sign", "fraction:0.1", "fraction:0.3", "auto"]:
        result = select(delta, labels, policy=policy, measure=lambda keep: float(weights @ keep), **limits)
        dropped = [index[i] for i in result.drop_ids]
        kept = [result.kept_per_class[str(c)] for c in range(5)]
        assert len(dropped) <= budget
        assert all(k >= f for k, f in zip(kept, floors))
        dropped_per_class = [result.dropped_per_class[str(c)] for c in range(5)]
        assert dropped_per_class == list(np.bincount(labels[dropped], minlength=5))
        assert (delta[dropped] < 0).all()
        assert [(delta[k], ids_for(n)[k]) for k in dropped] == sorted((delta[k], ids_for(n)[k]) for k in dropped)
        assert set(result.reasons) == set(result.drop_ids)
        if policy == "sign":  # greedy: a harmful instance is kept only when a limit stopped it
            for k in set(np.flatnonzero(delta < 0)) - set(dropped):
                assert kept[labels[k]] == floors[labels[k]] or len(dropped) == budget


# --- baseline policies on a hand-made table ----------------------------------------------------------------


@pytest.mark.parametrize("text", ["loss:0.2", "random:0.1", "cleanlab"])
def test_baseline_policy_text_round_trips_and_names_its_family(text):
    policy = parse_policy(text)
    assert str(policy) == text and policy.family == text.split(":")[0]
    assert parse_policy("fraction:0.1").family == parse_policy("auto").family == "influence"


@pytest.mark.parametrize("text", ["loss", "random", "cleanlab:0.1", "loss:1.5"])
def test_baseline_policy_needs_its_fraction_and_only_then(text):
    with pytest.raises(UserError):
        parse_policy(text)


def test_loss_policy_drops_the_highest_losses_even_positive_scores():
    losses = np.array([0.1, 2.5, 0.3, 4.0, 0.05, 1.0, 0.2, 3.0, 0.4, 0.6])
    result = select(-losses, policy="loss:0.3")  # 3 highest: ids 3, 7, 1 in that order
    assert result.drop_ids == ["x003", "x007", "x001"]
    assert result.reasons["x003"].startswith("among the 30% highest warm-up training losses (rank 1, loss 4")


def test_random_policy_drops_the_first_of_its_order():
    scores = np.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.2])
    result = select(scores, policy="random:0.5")
    assert result.drop_ids == ["x001", "x005", "x003"]
    assert all("random" in reason for reason in result.reasons.values())


def test_cleanlab_drops_exactly_the_flagged_ones_lowest_quality_first():
    quality = np.array([0.9, 0.05, 0.8, 0.3, 0.02, 0.6])
    flagged = np.array([False, True, False, True, True, False])
    result = select(quality, policy="cleanlab", eligible=flagged)
    assert result.drop_ids == ["x004", "x001", "x003"]


def test_cleanlab_without_flags_and_bad_flags_are_user_errors():
    with pytest.raises(UserError, match="eligible"):
        select([0.1, 0.2], policy="cleanlab")
    with pytest.raises(UserError, match="bool array"):
        select([0.1, 0.2], policy="cleanlab", eligible=[1, 0])


def test_baselines_respect_caps_and_floors():
    labels = np.array([0, 0, 0, 0, 1, 1])
    result = select(np.arange(6.0), labels, policy="loss:0.9", max_drop_fraction=0.5, min_per_class=1)
    # the three first (budget floor(0.5 * 6)); then class 1 keeps one of its two at its floor
    assert result.drop_ids == ["x000", "x001", "x002"]
    result = select(np.arange(6.0)[::-1], labels, policy="random:0.9", max_drop_fraction=0.8, min_per_class=1)
    assert result.drop_ids == ["x005", "x003", "x002", "x001"]


def test_auto_margin_prefers_fewer_drops_when_the_loss_gap_is_tiny():
    delta = -np.linspace(2.0, 1.0, 100)
    losses = {0: 0.150, 5: 0.1495, 10: 0.1449, 20: 0.1447}  # sign (50 drops after the cap) measures 0.5

    def measure(keep):
        return losses.get(int((~keep).sum()), 0.5)

    strict = select(delta, policy="auto", measure=measure, max_drop_fraction=0.5)
    assert strict.chosen == "fraction:0.2"
    tolerant = select(delta, policy="auto", measure=measure, max_drop_fraction=0.5, auto_margin=0.02)
    assert tolerant.chosen == "fraction:0.1"  # 0.1449 is within 2% of 0.1447; 0.1495 is not
    assert any("within the margin" in note for note in tolerant.notes)
    with_none = select(delta, policy="auto", measure=measure, max_drop_fraction=0.5, auto_margin=0.04)
    assert with_none.chosen == "none"


# --- auto's noise test: a drop set must beat keeping everything by more than min_z standard errors ---------


def per_example(table):
    """A refit stand-in giving per-example validation losses looked up by the number of drops."""
    return lambda keep: np.asarray(table[int((~keep).sum())], dtype=float)


# 4 validation examples; with 100 harmful-ranked instances the candidates drop 0, 5, 10, 20 and 50 (sign, capped)
NOISY_TABLE = {0: [1.0, 1.0, 1.0, 1.0],
               5: [0.9, 1.1, 0.9, 1.1],    # win 0: z 0
               10: [0.2, 1.0, 1.0, 1.0],   # win 0.2, differences (0.8, 0, 0, 0): z = 0.2 / (0.4 / 2) = 1.0
               20: [0.5, 0.6, 0.5, 0.6],   # win 0.45, differences (0.5, 0.4, 0.5, 0.4): z = 0.45 / (0.0577 / 2) = 15.6
               50: [0.0, 0.0, 1.8, 0.0]}   # lowest mean (0.45) but differences (1, 1, -0.8, 1): z = 0.55 / 0.45


def test_auto_min_z_refuses_wins_within_the_noise():
    delta = -np.linspace(2.0, 1.0, 100)
    plain = select(delta, policy="auto", measure=per_example(NOISY_TABLE), max_drop_fraction=0.5)
    assert plain.chosen == "sign"  # lowest mean loss, 0.45
    assert all(c.win_z is None for c in plain.candidates)
    tested = select(delta, policy="auto", measure=per_example(NOISY_TABLE), max_drop_fraction=0.5, auto_min_z=2.0)
    assert tested.chosen == "fraction:0.2"
    assert len(tested.drop_ids) == 20
    z = {c.name: c.win_z for c in tested.candidates}
    assert z["none"] == 0.0 and z["fraction:0.05"] == pytest.approx(0.0, abs=1e-9)
    assert z["fraction:0.1"] == pytest.approx(1.0)
    assert z["sign"] == pytest.approx(0.55 / 0.45)
    assert z["fraction:0.2"] == pytest.approx(0.45 / (np.std([0.5, 0.4, 0.5, 0.4], ddof=1) / 2))
    assert tested.candidates[1].val_loss == pytest.approx(0.45)  # still measured and reported
    assert any(note.startswith("auto refused sign: its val_loss 0.45 beats keeping everything by only 1.22 "
                               "standard errors (needs more than 2.53: 2 for one of 4 sets tested at once)")
               for note in tested.notes)
    assert any(note.startswith("auto refused fraction:0.1") for note in tested.notes)


def test_auto_min_z_keeps_everything_when_no_win_is_clear():
    delta = -np.linspace(2.0, 1.0, 100)
    table = {**NOISY_TABLE, 20: [0.1, 1.0, 1.0, 1.0]}  # z 1.0, below 2 like the others
    result = select(delta, policy="auto", measure=per_example(table), max_drop_fraction=0.5, auto_min_z=2.0)
    assert result.chosen == "none"
    assert result.drop_ids == []
    assert any("kept every instance" in note for note in result.notes)
    lenient = select(delta, policy="auto", measure=per_example(table), max_drop_fraction=0.5, auto_min_z=0.05)
    assert lenient.chosen == "sign"  # its z 1.22 passes 0.05's gate for four sets (1.17): the lowest mean loss


def test_auto_min_z_win_without_spread():
    delta = -np.linspace(2.0, 1.0, 100)
    table = {0: [1.0, 1.0], 5: [0.9, 0.9], 10: [0.9, 0.9], 20: [0.9, 0.9], 50: [0.9, 0.9]}
    result = select(delta, policy="auto", measure=per_example(table), max_drop_fraction=0.5, auto_min_z=3.0)
    assert result.candidates[1].win_z == math.inf  # every drop set wins 0.1 on both examples
    assert result.chosen == "sign"  # all equally good: the most drops


def test_auto_min_z_keeps_the_most_drops_among_sets_the_best_does_not_clearly_beat():
    delta = -np.linspace(2.0, 1.0, 100)
    table = {0: [1.0, 1.0, 1.0, 1.0],
             5: [0.6, 0.7, 0.6, 0.7],     # beats none; fraction:0.1 beats it by 0.1 everywhere: z infinite
             10: [0.5, 0.6, 0.5, 0.6],    # the lowest, 0.55
             20: [0.4, 0.8, 0.5, 0.6],    # 0.575; fraction:0.1's win over it, (-0.1, 0.2, 0, 0), is z 0.40
             50: [0.9, 0.95, 0.9, 0.95]}  # beats none (z 5.2) but fraction:0.1 beats it clearly
    result = select(delta, policy="auto", measure=per_example(table), max_drop_fraction=0.5, auto_min_z=2.0)
    assert result.chosen == "fraction:0.2"
    assert len(result.drop_ids) == 20
    assert ("auto chose fraction:0.2 (20 drops): its val_loss 0.575 is within 2 standard errors of the lowest 0.55"
            in result.notes)
    margin_rule = select(delta, policy="auto", measure=per_example(table), max_drop_fraction=0.5, auto_margin=0.05)
    assert margin_rule.chosen == "fraction:0.1"  # min_z 0: the fewest drops within 5% of the lowest


def test_auto_gate_rises_with_the_number_of_drop_sets_tested():
    assert family_gate(2.0, 1) == 2.0 and family_gate(2.0, 0) == 2.0
    assert family_gate(2.0, 4) == pytest.approx(2.531, abs=1e-3)  # P(Z > 2) / 4 = 0.00569
    assert family_gate(2.0, 2) < family_gate(2.0, 3) < family_gate(2.0, 4)
    assert family_gate(0.0, 4) > 0 and family_gate(40.0, 4) == 40.0  # a tail too small for floats: as given
    delta = -np.linspace(2.0, 1.0, 100)
    win = [0.2, 0.7, 0.2, 0.7, 0.2, 0.7, 0.2, 0.7]  # differences 0.8 / 0.3: z = 0.55 / (0.267 / sqrt 8) = 5.8
    spread = [0.2, 1.2, 0.2, 1.2, 0.2, 1.2, 0.2, 0.7]  # differences 0.8 / -0.2 (0.3 once): z 2.07
    alone = select(delta, policy="auto", measure=per_example({0: [1.0] * 8, 5: spread}), max_drop_fraction=0.05,
                   auto_min_z=2.0)  # only fraction:0.05's 5 drops are a set: one test at 2
    assert alone.chosen != "none" and len(alone.drop_ids) == 5
    among = select(delta, policy="auto", measure=per_example({0: [1.0] * 8, 5: spread, 10: [1.0] * 8,
                                                              20: [1.0] * 8, 50: [1.0] * 8}),
                   max_drop_fraction=0.5, auto_min_z=2.0)  # the same win among four sets: the gate is 2.53
    assert among.chosen == "none"
    clear = select(delta, policy="auto", measure=per_example({0: [1.0] * 8, 5: win, 10: [1.0] * 8,
                                                              20: [1.0] * 8, 50: [1.0] * 8}),
                   max_drop_fraction=0.5, auto_min_z=2.0)
    assert clear.chosen == "fraction:0.05"


@pytest.mark.parametrize("measure, message", [
    (lambda keep: 1.0, "per-example validation losses"),
    (lambda keep: np.ones(3 if keep.all() else 4), "per-example validation losses"),
])
def test_auto_min_z_needs_per_example_losses(measure, message):
    with pytest.raises(UserError, match=message):
        select(-np.linspace(2.0, 1.0, 100), policy="auto", measure=measure, auto_min_z=2.0)


def test_auto_min_z_must_not_be_negative():
    with pytest.raises(UserError, match="auto_min_z must be >= 0"):
        select(-np.ones(10), policy="auto", measure=lambda keep: 1.0, auto_min_z=-1.0)


# --- cross-fitted auto ---------------------------------------------------------------------------------------


def fold_measure(pattern_for_drops):
    """A refit stand-in for one fold: 6 per-example losses, 2.0 each unless the drop count has a pattern."""
    return lambda keep: np.asarray(pattern_for_drops.get(int((~keep).sum()), [2.0] * 6), dtype=float)


# Dropping 4 wins 0.7 on average with a wide spread: z = 0.7 / (1.095 / sqrt 6) = 1.57 on one fold's 6 examples,
# 0.7 / (1.044 / sqrt 12) = 2.32 on two folds' 12 pooled.
SPREAD_WIN = {4: [0.3, 2.3, 0.3, 2.3, 0.3, 2.3]}


def test_cross_fitted_auto_pools_the_folds_evidence_and_drops_from_the_main_ranking():
    main = np.r_[-np.arange(4, 0, -1), np.ones(16)]  # the main ranking's harmful: x000-x003
    fold_a = np.r_[np.ones(4), -np.ones(4), np.ones(12)]  # each fold ranks other instances harmful
    fold_b = np.r_[np.ones(8), -np.ones(4), np.ones(8)]
    # three distinct drop sets (1, 2 and 4 drops) are tested: min_z 1.5 becomes a gate of 2.01
    single = select(main, policy="auto", auto_min_z=1.5, measure=fold_measure(SPREAD_WIN))
    assert single.chosen == "none" and single.drop_ids == []  # one fold's 6 examples: z 1.57, refused
    folds = [Fold(fold_a, fold_measure(SPREAD_WIN)), Fold(fold_b, fold_measure(SPREAD_WIN))]
    pooled = select(main, policy="auto", auto_min_z=1.5, cross_fit=folds)
    assert pooled.chosen == "sign" and pooled.drop_ids == ids_for(4)
    sign = next(c for c in pooled.candidates if c.name == "sign")
    assert sign.examples == 12 and sign.win_z == pytest.approx(0.7 / (np.std([1.7, -0.3] * 6, ddof=1) / math.sqrt(12)))
    assert any("2 cross-fitted folds, 12 per-example validation losses pooled" in note for note in pooled.notes)


def test_cross_fitted_folds_measure_each_policy_on_their_own_ranking():
    seen = {"a": [], "b": []}

    def recorder(name):
        def measure(keep):
            seen[name].append(tuple(np.flatnonzero(~keep)))
            return np.full(3, 1.0)
        return measure

    select(np.r_[-np.ones(2), np.ones(18)], policy="auto", auto_min_z=2.0,
           cross_fit=[Fold(np.r_[np.ones(10), -np.ones(2), np.ones(8)], recorder("a")),
                      Fold(np.r_[np.ones(18), -np.ones(2)], recorder("b"))])
    assert seen["a"] == [(), (10, 11), (10,)] and seen["b"] == [(), (18, 19), (18,)]


def test_a_cross_fitting_fold_of_the_wrong_length_is_refused():
    with pytest.raises(UserError, match="cross-fitting fold's predicted_delta must be 20 finite values"):
        select(-np.ones(20), policy="auto", cross_fit=[Fold(-np.ones(19), fold_measure({}))])
