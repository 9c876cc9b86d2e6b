"""decisions.csv: parsed and checked line by line, applied to the training split, pins honoured by every policy."""
from __future__ import annotations

import random

import numpy as np
import pytest
from click.testing import CliRunner

from keras_itl.cli.main import main
from keras_itl.datasets import DatasetInfo, TargetDataset, load_dataset
from keras_itl.decisions import (
    MAX_FILE_BYTES,
    Decisions,
    apply_decisions,
    parse_decisions,
    pinned_ids,
    read_decisions,
)
from keras_itl.errors import UserError
from keras_itl.selection import select_drops
from tests.helpers import bright_quadrant_split

CLASSES = ["north-west", "north-east", "south-west", "south-east"]


def toy_data(n: int = 12) -> TargetDataset:
    train = bright_quadrant_split(n, num_classes=4, seed=1)
    info = DatasetInfo(spec="toy", name="toy", num_classes=4, class_names=list(CLASSES), image_shape=(12, 12, 1),
                       sizes={"train": n, "val": 0, "test": 0})
    return TargetDataset(info=info, splits={"train": train})


def test_a_file_is_parsed_in_order_with_optional_labels_and_blank_lines():
    decisions = parse_decisions("id,action,label\r\ntoy/0001,drop,\n\ntoy/0002,relabel,south-east\n"
                                'toy/0003,KEEP\n"toy/00,04",keep,\n')
    assert [(row.id, row.action, row.label, row.line) for row in decisions.rows] == [
        ("toy/0001", "drop", None, 2), ("toy/0002", "relabel", "south-east", 4), ("toy/0003", "keep", None, 5),
        ("toy/00,04", "keep", None, 6)]
    assert decisions.pinned == ["toy/0002", "toy/0003", "toy/00,04"]
    assert Decisions.from_dict(decisions.to_dict()).to_dict() == decisions.to_dict()


def test_a_header_only_file_decides_nothing():
    assert parse_decisions("id,action,label\n").rows == ()


@pytest.mark.parametrize("text, message", [
    ("", "empty; a decisions file starts with the header"),
    ("name,what\nx,drop\n", "line 1: the first row must be the header"),
    ("id,action,label\nx,destroy,\n", "line 2: unknown action 'destroy'; use keep, drop, relabel"),
    ("id,action,label\nx,relabel,\n", "line 2: relabel needs the new class"),
    ("id,action,label\nx,keep,south-east\n", "line 2: only relabel takes a label"),
    ("id,action,label\n,drop,\n", "line 2: the id is empty"),
    ("id,action,label\nx,drop,,extra\n", "line 2: expected id,action,label, got 4 fields"),
    ("id,action,label\nx\n", "line 2: expected id,action,label, got 1 fields"),
    ("id,action,label\nx,drop,\n\ny,keep,\nx,keep,\n", "line 5: id 'x' was already decided on line 2"),
    ("id,action,label\n\"x,drop,\n", "line 2: not a CSV row"),
    ("id,action,label\nx\0,drop,\n", "holds a NUL byte"),
    ("id,action,label\n" + "x" * 5000 + ",drop,\n", "line 2: a field is longer than 4096"),
])
def test_a_malformed_file_is_refused_in_one_line_naming_the_line(text, message):
    with pytest.raises(UserError, match=message) as raised:
        parse_decisions(text, "my.csv")
    assert "\n" not in str(raised.value) and str(raised.value).startswith("my.csv")


def test_an_unreadable_or_oversized_file_is_refused_in_one_line(tmp_path):
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"id,action,label\n\xff\xfe,drop,\n")
    with pytest.raises(UserError, match="not UTF-8 text"):
        read_decisions(binary)
    huge = tmp_path / "huge.csv"
    with open(huge, "wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(UserError, match="more than a decisions file can hold"):
        read_decisions(huge)
    with pytest.raises(UserError, match="cannot read decisions file"):
        read_decisions(tmp_path / "missing.csv")


def test_apply_drops_relabels_and_records_them():
    data = toy_data()
    train = data.split("train")
    decisions = parse_decisions(f"id,action,label\n{train.ids[0]},drop,\n{train.ids[3]},relabel,south-east\n"
                                f"{train.ids[5]},keep,\n")
    decided = apply_decisions(data, decisions)
    new = decided.split("train")
    assert list(new.ids) == [i for i in train.ids if i != train.ids[0]]
    labels = dict(zip(new.ids, new.labels))
    assert labels[train.ids[3]] == CLASSES.index("south-east")
    assert all(labels[i] == label for i, label in zip(train.ids[4:], train.labels[4:]))
    assert np.array_equal(new.images, train.images[1:])
    assert decided.info.sizes["train"] == len(train) - 1
    assert decided.info.decisions == {"file": "decisions.csv", "keep": [train.ids[5]], "drop": [train.ids[0]],
                                      "relabel": {train.ids[3]: "south-east"}}
    assert sorted(pinned_ids(decided)) == [train.ids[3], train.ids[5]]
    assert pinned_ids(data) == [] and data.split("train") is train  # the original is left as it was


@pytest.mark.parametrize("row, message", [
    ("toy/9999,drop,", "my.csv line 3: unknown id 'toy/9999': not a training instance of toy"),
    ("toy/0001,relabel,north", "my.csv line 3: unknown label 'north'; the classes of toy are north-west, "),
])
def test_apply_refuses_unknown_ids_and_labels_naming_the_line(row, message):
    decisions = parse_decisions(f"id,action,label\ntoy/0000,keep,\n{row}\n", "my.csv")
    with pytest.raises(UserError, match=message):
        apply_decisions(toy_data(), decisions)


def test_seeded_fuzz_parses_or_refuses_in_one_line():
    """Random edits of a valid file: every outcome is decisions or a one-line UserError, never another error."""
    rng = random.Random(25)
    valid = "id,action,label\ntoy/0000,drop,\ntoy/0001,relabel,south-east\ntoy/0002,keep,\n"
    alphabet = ['"', ",", "\n", "\r", "\0", "x", "toy/0003", "relabel", "keep", "drop", "\ufeff", "é", " "]
    for _ in range(500):
        text = list(valid)
        for _ in range(rng.randint(1, 6)):
            position = rng.randrange(len(text) + 1)
            if rng.random() < 0.5 and text:
                del text[min(position, len(text) - 1)]
            else:
                text.insert(position, rng.choice(alphabet))
        try:
            decided = apply_decisions(toy_data(), parse_decisions("".join(text)))
        except UserError as error:
            assert "\n" not in str(error)
        else:
            assert len(decided.split("train")) <= 12


def test_a_pinned_id_is_never_dropped_and_the_note_says_why():
    ids = [f"x{i}" for i in range(6)]
    delta = [-3.0, -2.0, -1.0, 0.5, 1.0, 2.0]
    free = select_drops(ids, [0] * 6, delta, policy="sign", class_names=["a"], max_drop_fraction=0.9,
                        min_class_keep_fraction=0.0)
    pinned = select_drops(ids, [0] * 6, delta, policy="sign", class_names=["a"], max_drop_fraction=0.9,
                          min_class_keep_fraction=0.0, pinned=["x1", "unknown"])
    assert free.drop_ids == ["x0", "x1", "x2"]
    assert pinned.drop_ids == ["x0", "x2"]
    assert any("a person's decision keeps them" in note for note in pinned.notes)


@pytest.mark.parametrize("policy", ["fraction:0.5", "loss:0.5", "random:0.5", "auto"])
def test_pins_hold_for_every_policy(policy):
    rng = np.random.default_rng(3)
    ids = [f"x{i:02d}" for i in range(40)]
    delta = rng.normal(size=40)
    pinned = ids[::3]
    selection = select_drops(ids, rng.integers(0, 2, 40), delta, policy=policy, class_names=["a", "b"],
                             max_drop_fraction=0.9, min_class_keep_fraction=0.0, pinned=pinned, auto_min_z=0.0,
                             measure=lambda keep: 1.0 - 0.01 * (~keep).sum())
    assert selection.drop_ids and not set(selection.drop_ids) & set(pinned)


def test_train_refuses_a_bad_decisions_file_in_one_line_before_training(tmp_path):
    known = load_dataset("digits", max_train_examples=60).split("train").ids[0]
    bad = tmp_path / "decisions.csv"
    bad.write_text(f"id,action,label\n{known},keep,\nnot-an-id,drop,\n")
    result = CliRunner().invoke(main, ["train", "--target", "digits", "--max-train-examples", "60", "--output",
                                       str(tmp_path / "run"), "--decisions", str(bad), "--quiet"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: {bad} line 3: unknown id 'not-an-id': not a training instance of digits"]
    assert not (tmp_path / "run" / "model.keras").exists()


def test_report_refuses_a_directory_that_is_no_run(tmp_path):
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.strip() == (f"Error: {tmp_path} holds neither run.json (a keras-itl train run) nor "
                                     "results.json (a keras-itl experiment)")
