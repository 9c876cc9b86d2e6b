"""The REST JSON codec: the numeric fast path reads exactly what a full JSON parse reads, and falls back
(or refuses) whenever a body is anything but a plain array of numbers."""
from __future__ import annotations

import json

import numpy as np
import orjson
import pytest
import tensorflow as tf

from keras_itl.serving import json_codec
from keras_itl.serving.errors import InvalidArgument
from keras_itl.serving.numeric_json import find_tensor_array, parse_number_array
from keras_itl.serving.signatures import Signature


@pytest.fixture(autouse=True)
def fast_path_for_every_size(monkeypatch):
    """Small bodies normally skip the fast path; these tests are about it."""
    monkeypatch.setattr(json_codec, "FAST_PATH_BYTES", 0)


def _signature(shape, dtype=tf.float32) -> Signature:
    return Signature(lambda **_: {}, {"x": tf.TensorSpec(shape, dtype, name="x")}, {})


@pytest.mark.parametrize("seed", range(5))
def test_fast_path_equals_a_full_parse(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(1, 5, rng.integers(1, 5)))
    values = rng.standard_normal(shape) * 10.0 ** rng.integers(-40, 40, shape)
    for text in (json.dumps(values.tolist()),
                 orjson.dumps(values.astype(np.float32), option=orjson.OPT_SERIALIZE_NUMPY).decode(),
                 json.dumps(values.tolist(), indent=1)):
        for dtype in (np.float32, np.float64):
            fast = parse_number_array(text.encode(), dtype)
            assert fast is not None and fast.dtype == dtype
            np.testing.assert_array_equal(fast.view(np.uint8), np.asarray(json.loads(text), dtype).view(np.uint8))


def test_integer_literals_of_every_size_read_as_a_full_parse_reads_them():
    text = b"[[1, -2, 9007199254740993, -9223372036854775808, 18446744073709551615]]"
    np.testing.assert_array_equal(parse_number_array(text, np.float64), np.asarray(json.loads(text), np.float64))


@pytest.mark.parametrize("text", [b"[1,2,[3]]", b"[[1,2],[3]]", b"[]", b"[[]]", b"[1 2]", b"[+1]", b"[1.2.3]", b"[.5]",
                                  b"[1,]", b"[NaN]", b"[1e400]", b"[1-2]", b'["1"]', b"[true]", b"[[1],2]", b"[1e]",
                                  b"[[1,2]5,[3,4]]", b"[[1,2],5[3,4]]", b"[[1,2] 5,[3,4]]", b"[[1,2],[3 4,5]]"])
def test_fast_path_declines_what_it_does_not_read(text):
    assert parse_number_array(text, np.float32) is None


@pytest.mark.parametrize("body", [
    b'{"signature_name": "\\"instances\\": [1]", "instances": [[1.5]]}',  # the key inside a string
    b'{"inputs": {"instances": [[9.0]]}, "x": 1}',  # the key nested deeper
    b'{"\\"instances": [[9.0]], "instances": [[1.5]]}',  # a lookalike key
    b'{"instances": [[1.5]], "instances2": [[9.0]]}',
])
def test_bodies_that_resemble_the_fast_path_still_parse_as_json_does(body):
    expected = json.loads(body)
    request = json_codec.parse_predict_body(body)
    key = "instances" if "instances" in expected else "inputs"
    if isinstance(expected.get(key), list):
        inputs = json_codec.decode_inputs(request, _signature([None, 1]))
        np.testing.assert_array_equal(inputs["x"], np.asarray(expected[key], np.float32))
    else:
        with pytest.raises(InvalidArgument):
            json_codec.decode_inputs(request, _signature([None, 1]))


def test_the_candidate_array_is_found_only_once():
    assert find_tensor_array(b'{"instances": [1], "inputs": [2]}') is None
    found = find_tensor_array(b'{"inputs" :\n[[1, 2]] }')
    assert found.key == "inputs" and b'{"inputs" :\n[[1, 2]] }'[found.start:found.end] == b"[[1, 2]]"
    assert len(found.classes) == len(b"[[1, 2]]")


def test_the_fast_path_is_taken_for_float_arrays_only():
    assert isinstance(json_codec.parse_predict_body(b'{"instances": [[1.5]]}').payload, json_codec.RawArray)
    assert not isinstance(json_codec.parse_predict_body(b'{"instances": [{"x": [1.5]}]}').payload, json_codec.RawArray)


def test_integer_inputs_take_the_checked_path():
    request = json_codec.parse_predict_body(b'{"instances": [1, 2, 3]}')
    assert json_codec.decode_inputs(request, _signature([None], tf.int64))["x"].tolist() == [1, 2, 3]
    with pytest.raises(InvalidArgument, match="non-integral"):
        json_codec.decode_inputs(json_codec.parse_predict_body(b'{"instances": [1.5]}'), _signature([None], tf.int64))


def test_outputs_are_written_from_numpy_and_read_back_bit_for_bit():
    probabilities = np.random.default_rng(0).random((3, 4)).astype(np.float32)
    body = json_codec.encode_outputs({"p": probabilities, "c": np.array([1, 2, 3])}, json_codec.ROW)
    rows = orjson.loads(body)["predictions"]
    np.testing.assert_array_equal(np.asarray([r["p"] for r in rows], np.float32), probabilities)
    assert [r["c"] for r in rows] == [1, 2, 3]
    assert json_codec.encode_outputs({"y": np.array([np.nan, np.inf], np.float32)}, json_codec.COLUMNAR) == \
        b'{"outputs":[NaN,Infinity]}'


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 9])
def test_numbers_are_read_across_chunk_boundaries(monkeypatch, count):
    monkeypatch.setattr("keras_itl.serving.numeric_json.CHUNK", 3)
    values = np.arange(count, dtype=np.float32).reshape(count, 1) / 7
    text = orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY)
    np.testing.assert_array_equal(parse_number_array(text, np.float32), values)
    assert parse_number_array(text[:-2] + b"-" + text[-2:], np.float32) is None  # the last chunk's last number
