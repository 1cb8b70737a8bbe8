"""Signatures inferred from samples and read off ONNX models."""

from __future__ import annotations

from typing import Any

import numpy
import onnx
import onnxruntime
import pandas
import pytest
from onnx import TensorProto, helper
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression

from capstan.registry.inference import (
    datatype_of,
    infer_signature,
    numpy_dtype,
    onnx_signature,
)
from capstan.registry.signature import DATATYPES, Signature, TensorSpec


def _session(model_bytes: bytes) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])


def _classifier() -> tuple[LogisticRegression, numpy.ndarray[Any, Any]]:
    features = numpy.random.default_rng(7).normal(size=(40, 4))
    labels = (features[:, 0] + features[:, 1] > 0).astype(numpy.int64)
    return LogisticRegression().fit(features, labels), features.astype(numpy.float32)


# --- datatypes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "datatype"),
    [
        (numpy.bool_, "BOOL"),
        (numpy.int8, "INT8"),
        (numpy.int16, "INT16"),
        (numpy.int32, "INT32"),
        (numpy.int64, "INT64"),
        (numpy.uint8, "UINT8"),
        (numpy.uint16, "UINT16"),
        (numpy.uint32, "UINT32"),
        (numpy.uint64, "UINT64"),
        (numpy.float16, "FP16"),
        (numpy.float32, "FP32"),
        (numpy.float64, "FP64"),
        (object, "BYTES"),
        ("<U7", "BYTES"),
        ("S3", "BYTES"),
        (numpy.dtypes.StringDType(), "BYTES"),
    ],
)
def test_numpy_dtypes_map_to_protocol_datatypes(dtype: Any, datatype: str) -> None:
    assert datatype_of(numpy.dtype(dtype)) == datatype


@pytest.mark.parametrize("datatype", DATATYPES)
def test_every_protocol_datatype_maps_to_a_numpy_dtype_and_back(datatype: str) -> None:
    assert datatype_of(numpy_dtype(datatype)) == datatype


def test_bytes_decode_to_object_arrays() -> None:
    assert numpy_dtype("BYTES") == numpy.dtype(object)


def test_byte_order_does_not_change_the_datatype() -> None:
    assert datatype_of(numpy.dtype(">i4")) == "INT32"


@pytest.mark.parametrize("dtype", ["complex128", "datetime64[ns]", "timedelta64[s]"])
def test_a_dtype_without_a_protocol_datatype_is_refused_by_name(dtype: str) -> None:
    with pytest.raises(ValueError, match=dtype.split("[")[0]):
        datatype_of(numpy.dtype(dtype))


def test_an_unknown_datatype_is_refused() -> None:
    with pytest.raises(ValueError, match="BF16"):
        numpy_dtype("BF16")


# --- inference from samples ------------------------------------------------------------------


def test_a_numeric_dataframe_is_one_feature_tensor_with_its_column_names() -> None:
    frame = pandas.DataFrame({"age": [31, 45], "income": [5.5, 7.25], "tenure": [2, 9]})

    signature = infer_signature(frame)

    assert signature.inputs == (TensorSpec("input", "FP64", (-1, 3)),)
    assert signature.columns == ("age", "income", "tenure")


def test_an_all_integer_dataframe_is_an_int64_tensor() -> None:
    frame = pandas.DataFrame(
        {"a": numpy.array([1, 2], dtype=numpy.int32), "b": [3, 4], "c": [True, False]}
    )

    assert infer_signature(frame).inputs == (TensorSpec("input", "INT64", (-1, 3)),)


def test_an_all_bool_dataframe_is_a_bool_tensor() -> None:
    frame = pandas.DataFrame({"a": [True, False], "b": [False, False]})

    assert infer_signature(frame).inputs == (TensorSpec("input", "BOOL", (-1, 2)),)


def test_a_dataframe_of_float32_or_narrower_is_an_fp32_tensor() -> None:
    frame = pandas.DataFrame(
        {
            "a": numpy.array([1, 2], dtype=numpy.float32),
            "b": numpy.array([3, 4], dtype=numpy.float16),
        }
    )

    assert infer_signature(frame).inputs == (TensorSpec("input", "FP32", (-1, 2)),)


def test_float32_mixed_with_integers_widens_to_fp64() -> None:
    frame = pandas.DataFrame({"a": numpy.array([1, 2], dtype=numpy.float32), "b": [3, 4]})

    assert infer_signature(frame).inputs == (TensorSpec("input", "FP64", (-1, 2)),)


def test_a_dataframe_with_a_text_column_has_one_input_per_column_and_no_columns() -> None:
    frame = pandas.DataFrame(
        {
            "age": [31, 45],
            "city": ["Oslo", "Lima"],
            "score": numpy.array([0.5, 0.25], dtype=numpy.float32),
            "member": [True, False],
        }
    )

    signature = infer_signature(frame)

    assert signature.inputs == (
        TensorSpec("age", "INT64", (-1,)),
        TensorSpec("city", "BYTES", (-1,)),
        TensorSpec("score", "FP32", (-1,)),
        TensorSpec("member", "BOOL", (-1,)),
    )
    assert signature.columns == ()


def test_pandas_extension_columns_map_like_their_numpy_counterparts() -> None:
    frame = pandas.DataFrame(
        {
            "count": pandas.array([1, None], dtype="Int64"),
            "flag": pandas.array([True, None], dtype="boolean"),
            "name": pandas.array(["a", None], dtype="string"),
        }
    )

    assert infer_signature(frame).inputs == (
        TensorSpec("count", "INT64", (-1,)),
        TensorSpec("flag", "BOOL", (-1,)),
        TensorSpec("name", "BYTES", (-1,)),
    )


def test_a_categorical_column_never_joins_the_feature_tensor() -> None:
    frame = pandas.DataFrame({"x": [1.0, 2.0], "grade": pandas.Categorical([1, 2])})

    assert infer_signature(frame).inputs == (
        TensorSpec("x", "FP64", (-1,)),
        TensorSpec("grade", "INT64", (-1,)),
    )


def test_a_dataframe_column_without_a_datatype_is_refused_by_name() -> None:
    frame = pandas.DataFrame({"when": pandas.to_datetime(["2024-01-01"]), "city": ["Oslo"]})

    with pytest.raises(ValueError, match="'when'"):
        infer_signature(frame)


def test_a_2d_array_is_one_tensor_with_a_free_batch_dimension() -> None:
    signature = infer_signature(numpy.zeros((5, 3), dtype=numpy.float32))

    assert signature == Signature((TensorSpec("input", "FP32", (-1, 3)),), ())


def test_a_1d_array_is_a_batch_of_scalars() -> None:
    assert infer_signature(numpy.arange(4)).inputs == (TensorSpec("input", "INT64", (-1,)),)


def test_a_dict_has_one_input_per_key_keeping_trailing_dimensions() -> None:
    sample = {
        "image": numpy.zeros((2, 28, 28), dtype=numpy.uint8),
        "caption": ["a cat", "a dog"],
    }

    assert infer_signature(sample).inputs == (
        TensorSpec("image", "UINT8", (-1, 28, 28)),
        TensorSpec("caption", "BYTES", (-1,)),
    )


def test_a_scalar_sample_is_refused() -> None:
    with pytest.raises(ValueError, match="batch"):
        infer_signature(numpy.float64(1.0))


def test_an_output_array_is_named_output() -> None:
    signature = infer_signature(numpy.zeros((3, 2)), numpy.zeros((3, 4), dtype=numpy.float32))

    assert signature.outputs == (TensorSpec("output", "FP32", (-1, 4)),)


def test_a_dict_of_outputs_keeps_its_names() -> None:
    outputs = {"label": numpy.array([0, 1]), "probabilities": numpy.zeros((2, 2))}

    signature = infer_signature(numpy.zeros((2, 3)), outputs)

    assert signature.outputs == (
        TensorSpec("label", "INT64", (-1,)),
        TensorSpec("probabilities", "FP64", (-1, 2)),
    )


def test_no_outputs_gives_an_empty_output_list() -> None:
    assert infer_signature(numpy.zeros((2, 3))).outputs == ()


def test_an_inferred_signature_survives_its_json_form() -> None:
    frame = pandas.DataFrame({"age": [31, 45], "income": [5.5, 7.25]})
    signature = infer_signature(frame, numpy.array([0.1, 0.9]))

    assert Signature.from_json(signature.as_json()) == signature


# --- ONNX ------------------------------------------------------------------------------------


def test_an_onnx_classifier_without_zipmap_has_label_and_probability_tensors() -> None:
    model, features = _classifier()
    converted = to_onnx(model, features[:1], options={id(model): {"zipmap": False}})

    signature = onnx_signature(_session(converted.SerializeToString()))

    assert signature == Signature(
        inputs=(TensorSpec("X", "FP32", (-1, 4)),),
        outputs=(
            TensorSpec("label", "INT64", (-1,)),
            TensorSpec("probabilities", "FP32", (-1, 2)),
        ),
    )


def test_the_zipmap_probabilities_of_an_onnx_classifier_are_left_out() -> None:
    model, features = _classifier()
    converted = to_onnx(model, features[:1])

    signature = onnx_signature(_session(converted.SerializeToString()))

    assert signature.outputs == (TensorSpec("output_label", "INT64", (-1,)),)


def test_named_onnx_dimensions_are_free() -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["text"], ["same"])],
        "echo",
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["batch", 3])],
        [helper.make_tensor_value_info("same", TensorProto.STRING, ["batch", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)

    signature = onnx_signature(_session(model.SerializeToString()))

    assert signature == Signature(
        (TensorSpec("text", "BYTES", (-1, 3)),), (TensorSpec("same", "BYTES", (-1, 3)),)
    )


def test_an_onnx_tensor_type_without_a_protocol_datatype_is_refused() -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["z"], ["same"])],
        "echo",
        [helper.make_tensor_value_info("z", TensorProto.BFLOAT16, [None])],
        [helper.make_tensor_value_info("same", TensorProto.BFLOAT16, [None])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    with pytest.raises(ValueError, match=r"'z'.*bfloat16"):
        onnx_signature(_session(model.SerializeToString()))
