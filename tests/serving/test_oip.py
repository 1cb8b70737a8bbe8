"""The Open Inference Protocol v2 wire format: what requests are taken, what is refused and how
it is named, and what responses look like, checked against the published spec (its JSON examples
and its OpenAPI schemas) and against a real OIP client, tritonclient."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

import numpy
import orjson
import pytest
import yaml
from jsonschema import Draft202012Validator
from tritonclient.http import (  # type: ignore[import-untyped]
    InferInput,
    InferRequestedOutput,
    InferResult,
)
from tritonclient.http._utils import _get_inference_request  # type: ignore[import-untyped]

from capstan.registry.signature import Signature, TensorSpec
from capstan.serving.oip import (
    InferRequest,
    OipError,
    encode_infer,
    encode_records,
    model_metadata,
    parse_infer,
)

# A tabular model fed one tensor of three features, with two outputs.
TABULAR = Signature(
    inputs=(TensorSpec("features", "FP32", (-1, 3)),),
    outputs=(TensorSpec("label", "INT64", (-1,)), TensorSpec("proba", "FP32", (-1, 2))),
    columns=("age", "income", "score"),
)
# A model fed one tensor per feature.
PER_FEATURE = Signature(
    inputs=(
        TensorSpec("age", "INT64", (-1,)),
        TensorSpec("city", "BYTES", (-1,)),
        TensorSpec("member", "BOOL", (-1,)),
    ),
    outputs=(TensorSpec("price", "FP64", (-1,)),),
)
# The model of the spec's example: two inputs, one output.
SPEC_MODEL = Signature(
    inputs=(TensorSpec("input0", "UINT32", (-1, 2)), TensorSpec("input1", "BOOL", (3,))),
    outputs=(TensorSpec("output0", "FP32", (3, 2)),),
)


def tensor(name: str, shape: list[int], datatype: str, data: Any) -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


def tensor_row() -> dict[str, Any]:
    return tensor("features", [1, 3], "FP32", [1, 2, 3])


# PER_FEATURE's inputs other than `age`, and SPEC_MODEL's `input1`, for requests about the rest.
PER_FEATURE_REST = [tensor("city", [1], "BYTES", ["Oslo"]), tensor("member", [1], "BOOL", [True])]
SPEC_INPUT1 = tensor("input1", [3], "BOOL", [True, False, True])


def features(data: Any, shape: list[int] | None = None, datatype: str = "FP32") -> bytes:
    """A request for TABULAR."""
    return orjson.dumps({"inputs": [tensor("features", shape or [1, 3], datatype, data)]})


def refusal(body: bytes | dict[str, Any], signature: Signature = TABULAR) -> str:
    with pytest.raises(OipError) as caught:
        parse_infer(body, signature)
    assert caught.value.status == 400
    return caught.value.message


def triton_request(
    inputs: list[Any], request_id: str = "", outputs: list[Any] | None = None, **custom: Any
) -> tuple[bytes, int | None]:
    body, header_length = _get_inference_request(
        inputs=inputs,
        request_id=request_id,
        outputs=outputs,
        sequence_id=0,
        sequence_start=False,
        sequence_end=False,
        priority=0,
        timeout=None,
        custom_parameters=custom or None,
    )
    return body, header_length


def triton_input(name: str, array: numpy.ndarray[Any, Any], datatype: str) -> Any:
    given = InferInput(name, list(array.shape), datatype)
    given.set_data_from_numpy(array, binary_data=False)
    return given


# --- the published spec ------------------------------------------------------------------------


@cache
def oip_schemas() -> dict[str, Any]:
    """The component schemas of the spec's OpenAPI document, found where tests/openai_spec.py
    finds the OpenAI one."""
    repo = Path(__file__).resolve().parents[2]
    folders = [repo / "shared" / "specs", repo.parent / "shared" / "specs"]
    folders.append(Path("/work/shared/specs"))
    if os.environ.get("CAPSTAN_TEST_SPECS"):
        folders.insert(0, Path(os.environ["CAPSTAN_TEST_SPECS"]))
    for folder in folders:
        path = folder / "oip" / "open_inference_rest.yaml"
        if path.is_file():
            document = yaml.safe_load(path.read_text())
            return dict(document["components"]["schemas"])
    raise FileNotFoundError(f"oip/open_inference_rest.yaml not found in {folders}")


def validate_oip(schema_name: str, instance: Any) -> None:
    schemas = oip_schemas()
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": {"schemas": schemas}}
    Draft202012Validator(schema).validate(instance)


def test_the_specs_request_example_is_refused_for_its_bool_tensor_of_shape_3_with_1_value() -> None:
    # Verbatim from inference_rest.md ("Inference Request Examples"); its input1 is inconsistent.
    example = b"""
    {
      "id" : "42",
      "inputs" : [
        {
          "name" : "input0",
          "shape" : [ 2, 2 ],
          "datatype" : "UINT32",
          "data" : [ 1, 2, 3, 4 ]
        },
        {
          "name" : "input1",
          "shape" : [ 3 ],
          "datatype" : "BOOL",
          "data" : [ true ]
        }
      ],
      "outputs" : [
        {
          "name" : "output0"
        }
      ]
    }"""

    assert refusal(example, SPEC_MODEL) == "input `input1`: shape [3] needs 3 values, got 1"


def test_the_specs_request_example_parses_once_its_bool_data_matches_its_shape() -> None:
    example = b"""
    {
      "id" : "42",
      "inputs" : [
        {
          "name" : "input0",
          "shape" : [ 2, 2 ],
          "datatype" : "UINT32",
          "data" : [ 1, 2, 3, 4 ]
        },
        {
          "name" : "input1",
          "shape" : [ 3 ],
          "datatype" : "BOOL",
          "data" : [ true, false, true ]
        }
      ],
      "outputs" : [
        {
          "name" : "output0"
        }
      ]
    }"""

    request = parse_infer(example, SPEC_MODEL)

    assert request.id == "42"
    assert request.outputs == ["output0"]
    assert request.inputs["input0"].dtype == numpy.uint32
    assert request.inputs["input0"].tolist() == [[1, 2], [3, 4]]
    assert request.inputs["input1"].tolist() == [True, False, True]


def test_the_specs_response_example_is_what_encode_infer_writes_plus_the_model_name() -> None:
    # From inference_rest.md, with the comma after "id" that the spec's text lacks; the schema
    # (open_inference_rest.yaml) requires `model_name`, which the example leaves out.
    example = orjson.loads(b"""
    {
      "id" : "42",
      "outputs" : [
        {
          "name" : "output0",
          "shape" : [ 3, 2 ],
          "datatype"  : "FP32",
          "data" : [ 1.0, 1.1, 2.0, 2.1, 3.0, 3.1 ]
        }
      ]
    }""")
    output0 = numpy.array([[1.0, 1.1], [2.0, 2.1], [3.0, 3.1]], dtype=numpy.float32)

    response = orjson.loads(encode_infer("mymodel", None, "42", {"output0": output0}))

    assert response == {"model_name": "mymodel", **example}


def test_a_response_validates_against_the_specs_schema() -> None:
    outputs = {
        "label": numpy.array([1, 0]),
        "proba": numpy.array([[0.2, 0.8], [0.9, 0.1]], dtype=numpy.float32),
    }

    body = encode_infer("churn", "3", "pred-1", outputs, parameters={"cached": False})

    validate_oip("inference_response", orjson.loads(body))


def test_an_error_body_validates_against_the_specs_schema() -> None:
    validate_oip("inference_error_response", OipError("missing input `x`").body())


def test_model_metadata_validates_against_the_specs_schema() -> None:
    metadata = model_metadata("churn", ["1", "2"], "sklearn_skops", TABULAR)

    validate_oip("metadata_model_response", metadata)


def test_what_tritonclient_sends_validates_against_the_specs_schema() -> None:
    row = numpy.array([[41.0, 52_000.0, 0.7]], dtype=numpy.float32)
    body, _ = triton_request([triton_input("features", row, "FP32")], "r1")

    validate_oip("inference_request", orjson.loads(body))


# --- tensors ---------------------------------------------------------------------------------


def test_flat_data_is_reshaped_to_the_inputs_shape() -> None:
    request = parse_infer(features([1, 2, 3, 4, 5, 6], [2, 3]), TABULAR)

    assert request.inputs["features"].tolist() == [[1, 2, 3], [4, 5, 6]]


def test_nested_data_reads_the_same_as_flat_data() -> None:
    request = parse_infer(features([[1, 2, 3], [4, 5, 6]], [2, 3]), TABULAR)

    assert request.inputs["features"].shape == (2, 3)
    assert request.inputs["features"].tolist() == [[1, 2, 3], [4, 5, 6]]


def test_inputs_have_the_signatures_dtype() -> None:
    request = parse_infer(features([1, 2.5, 3]), TABULAR)

    assert request.inputs["features"].dtype == numpy.float32


def test_inputs_keep_the_request_order() -> None:
    body = {
        "inputs": [
            tensor("member", [1], "BOOL", [True]),
            tensor("age", [1], "INT64", [41]),
            tensor("city", [1], "BYTES", ["Oslo"]),
        ]
    }

    assert list(parse_infer(body, PER_FEATURE).inputs) == ["member", "age", "city"]


def test_an_integer_input_is_taken_by_a_float_model() -> None:
    request = parse_infer(features([1, 2, 3], datatype="INT64"), TABULAR)

    assert request.inputs["features"].dtype == numpy.float32
    assert request.inputs["features"].tolist() == [[1.0, 2.0, 3.0]]


def test_an_fp64_input_is_taken_by_an_fp32_model() -> None:
    request = parse_infer(features([0.1, 0.2, 0.3], datatype="FP64"), TABULAR)

    assert request.inputs["features"].dtype == numpy.float32


def test_a_narrower_integer_input_is_taken_by_a_wider_integer_model() -> None:
    body = {"inputs": [tensor("age", [1], "INT8", [41]), *PER_FEATURE_REST]}

    assert parse_infer(body, PER_FEATURE).inputs["age"].dtype == numpy.int64


def test_a_float_input_is_refused_by_an_integer_model() -> None:
    body = {"inputs": [tensor("age", [1], "FP32", [41.0]), *PER_FEATURE_REST]}

    assert refusal(body, PER_FEATURE) == "input `age`: the model takes INT64, not FP32"


def test_a_bool_input_is_refused_by_a_numeric_model() -> None:
    assert refusal(features([True, False, True], datatype="BOOL")) == (
        "input `features`: the model takes FP32, not BOOL"
    )


def test_a_count_that_does_not_fill_the_shape_is_refused() -> None:
    assert refusal(features([1, 2, 3, 4, 5], [2, 3])) == (
        "input `features`: shape [2, 3] needs 6 values, got 5"
    )


def test_a_string_in_numeric_data_is_refused() -> None:
    assert refusal(features([1, "abc", 3])) == (
        'input `features`: "abc" at element 1 is not a number (FP32)'
    )


def test_a_numeric_string_is_not_read_as_a_number() -> None:
    assert refusal(features([1, "2.5", 3])) == (
        'input `features`: "2.5" at element 1 is not a number (FP32)'
    )


def test_null_in_numeric_data_is_refused() -> None:
    assert refusal(features([[1, 2, None]])) == (
        "input `features`: null at element 2 is not a number (FP32)"
    )


def test_a_fraction_in_integer_data_is_refused() -> None:
    body = {"inputs": [tensor("age", [2], "INT64", [41, 41.5]), *PER_FEATURE_REST]}

    assert refusal(body, PER_FEATURE) == (
        "input `age`: 41.5 at element 1 is not an integer (INT64)"
    )


def test_an_integer_out_of_its_datatypes_range_is_refused_not_wrapped() -> None:
    body = {"inputs": [tensor("input0", [1, 2], "UINT32", [1, -1]), SPEC_INPUT1]}

    assert refusal(body, SPEC_MODEL) == (
        "input `input0`: -1 at element 1 is out of range for UINT32"
    )


def test_a_float_beyond_fp32_is_refused_not_made_infinite() -> None:
    assert refusal(features([1, 1e300, 3], datatype="FP64")) == (
        "input `features`: 1e+300 at element 1 is out of range for FP32"
    )


def test_json_booleans_count_as_0_and_1_in_numeric_data() -> None:
    request = parse_infer(features([True, 2.5, False]), TABULAR)

    assert request.inputs["features"].tolist() == [[1.0, 2.5, 0.0]]


def test_nested_lists_of_unequal_lengths_are_refused() -> None:
    assert refusal(features([[1, 2], [3]], [1, 3])) == (
        "input `features`: the nested lists of `data` have unequal lengths"
    )


def test_a_missing_input_is_named() -> None:
    body = {"inputs": [tensor("age", [1], "INT64", [41]), tensor("city", [1], "BYTES", ["Oslo"])]}

    assert refusal(body, PER_FEATURE) == "missing input `member`"


def test_several_missing_inputs_are_all_named() -> None:
    body = {"inputs": [tensor("age", [1], "INT64", [41])]}

    assert refusal(body, PER_FEATURE) == "missing inputs `city`, `member`"


def test_an_unknown_input_is_named_with_the_inputs_the_model_takes() -> None:
    body = {"inputs": [tensor("x", [1, 3], "FP32", [1, 2, 3])]}

    assert refusal(body) == "unknown input `x`; the model takes: features"


def test_an_input_given_twice_is_refused() -> None:
    given = tensor("features", [1, 3], "FP32", [1, 2, 3])

    assert refusal({"inputs": [given, given]}) == "input `features` appears twice"


def test_a_shape_of_another_rank_is_refused() -> None:
    assert refusal(features([1, 2, 3], [3])) == (
        "input `features`: shape [3] does not match the model's [-1, 3]"
    )


def test_a_fixed_dimension_of_another_size_is_refused() -> None:
    assert refusal(features([1, 2, 3, 4], [1, 4])) == (
        "input `features`: shape [1, 4] does not match the model's [-1, 3]"
    )


def test_a_free_dimension_takes_any_size() -> None:
    request = parse_infer(features([0.5] * 300, [100, 3]), TABULAR)

    assert request.inputs["features"].shape == (100, 3)


def test_an_empty_batch_is_an_empty_array() -> None:
    request = parse_infer(features([], [0, 3]), TABULAR)

    assert request.inputs["features"].shape == (0, 3)
    assert request.inputs["features"].dtype == numpy.float32


def test_a_negative_dimension_in_a_request_is_refused() -> None:
    assert refusal(features([1, 2, 3], [-1, 3])) == (
        "input `features`: `shape` must be a list of non-negative integers"
    )


def test_an_unknown_datatype_is_refused() -> None:
    assert refusal(features([1, 2, 3], datatype="FLOAT")).startswith(
        'input `features`: unknown datatype "FLOAT"; one of BOOL, INT8,'
    )


def test_a_missing_datatype_is_refused() -> None:
    given = {"name": "features", "shape": [1, 3], "data": [1, 2, 3]}

    assert refusal({"inputs": [given]}) == "input `features`: missing `datatype`"


def test_data_that_is_not_a_list_is_refused() -> None:
    assert refusal(features(1.5, [1, 3])) == "input `features`: `data` must be a list"


def test_bytes_inputs_are_arrays_of_str() -> None:
    body = {
        "inputs": [
            tensor("age", [2], "INT64", [41, 23]),
            tensor("city", [2], "BYTES", ["Oslo", "Zürich"]),
            tensor("member", [2], "BOOL", [True, False]),
        ]
    }

    city = parse_infer(body, PER_FEATURE).inputs["city"]

    assert city.dtype == object
    assert city.tolist() == ["Oslo", "Zürich"]


def test_a_number_in_bytes_data_is_refused() -> None:
    body = {
        "inputs": [
            tensor("age", [2], "INT64", [1, 2]),
            tensor("city", [2], "BYTES", ["Oslo", 7]),
            tensor("member", [2], "BOOL", [True, False]),
        ]
    }

    assert refusal(body, PER_FEATURE) == "input `city`: 7 at element 1 is not a string (BYTES)"


def test_bool_inputs_are_bool_arrays() -> None:
    body = {"inputs": [tensor("input0", [1, 2], "UINT32", [1, 2]), SPEC_INPUT1]}

    request = parse_infer(body, SPEC_MODEL)

    assert request.inputs["input1"].dtype == numpy.bool_


def test_bool_data_must_be_json_booleans() -> None:
    body = {
        "inputs": [
            tensor("input0", [1, 2], "UINT32", [1, 2]),
            tensor("input1", [3], "BOOL", [True, 0, True]),
        ]
    }

    assert refusal(body, SPEC_MODEL) == "input `input1`: 0 at element 1 is not a boolean (BOOL)"


def test_binary_tensor_data_is_refused_with_how_to_send_json() -> None:
    given = {
        "name": "features",
        "shape": [1, 3],
        "datatype": "FP32",
        "parameters": {"binary_data_size": 12},
    }

    assert refusal({"inputs": [given]}) == (
        "input `features`: binary and shared-memory tensor data are not supported; send `data`"
        " as JSON (tritonclient: set_data_from_numpy(..., binary_data=False))"
    )


# --- records ---------------------------------------------------------------------------------


def test_records_build_the_tabular_input_in_column_order() -> None:
    body = {
        "inputs": [
            {"score": 0.7, "age": 41, "income": 52_000},
            {"income": 18_000, "score": 0.1, "age": 23},
        ]
    }

    request = parse_infer(body, TABULAR)

    assert request.records
    assert request.inputs["features"].dtype == numpy.float32
    expected = numpy.array([[41, 52_000, 0.7], [23, 18_000, 0.1]], dtype=numpy.float32)
    numpy.testing.assert_array_equal(request.inputs["features"], expected)


def test_records_build_one_array_per_input_for_a_model_fed_one_tensor_per_feature() -> None:
    body = {
        "inputs": [
            {"age": 41, "city": "Oslo", "member": True},
            {"age": 23, "city": "Lyon", "member": False},
        ]
    }

    request = parse_infer(body, PER_FEATURE)

    assert request.records
    assert request.inputs["age"].dtype == numpy.int64
    assert request.inputs["age"].tolist() == [41, 23]
    assert request.inputs["city"].tolist() == ["Oslo", "Lyon"]
    assert request.inputs["member"].tolist() == [True, False]


def test_tensors_are_not_records() -> None:
    assert not parse_infer(features([1, 2, 3]), TABULAR).records


def test_a_record_missing_a_feature_names_the_feature_and_row() -> None:
    body = {"inputs": [{"age": 41, "income": 1, "score": 0.7}, {"age": 23, "score": 0.1}]}

    assert refusal(body) == "row 1: missing feature `income`"


def test_a_record_with_an_unknown_feature_names_it() -> None:
    body = {"inputs": [{"age": 41, "income": 1, "score": 0.7, "zip": 75001}]}

    assert refusal(body) == "row 0: unknown feature `zip`; the model takes: age, income, score"


def test_a_bad_value_in_a_record_names_the_feature_and_row() -> None:
    body = {
        "inputs": [
            {"age": 41, "income": 1, "score": 0.7},
            {"age": 23, "income": "n/a", "score": 0.1},
        ]
    }

    assert refusal(body) == 'feature `income` in row 1: "n/a" is not a number (FP32)'


def test_a_bad_value_in_per_feature_records_names_the_feature_and_row() -> None:
    body = {
        "inputs": [
            {"age": 41, "city": "Oslo", "member": True},
            {"age": 23, "city": None, "member": False},
        ]
    }

    assert refusal(body, PER_FEATURE) == "feature `city` in row 1: null is not a string (BYTES)"


def test_a_list_where_a_feature_value_belongs_is_refused() -> None:
    body = {"inputs": [{"age": [41], "income": [1], "score": [0.7]}]}

    assert refusal(body) == "feature `age` in row 0: [41] is not a number (FP32)"


def test_a_record_that_is_not_an_object_is_refused() -> None:
    body = {"inputs": [{"age": 41, "income": 1, "score": 0.7}, [23, 1, 0.1]]}

    assert refusal(body) == "row 1 is not an object"


def test_records_are_refused_by_a_model_fed_tensors() -> None:
    body = {"inputs": [{"a": 1, "b": 2}]}

    assert refusal(body, SPEC_MODEL) == (
        "this model takes tensors (`input0` [-1, 2], `input1` [3]), not records;"
        " send `inputs` as tensor objects"
    )


def test_a_feature_named_like_a_tensor_key_still_reads_as_a_record() -> None:
    signature = Signature(
        inputs=(TensorSpec("x", "FP64", (-1, 2)),),
        outputs=(TensorSpec("y", "FP64", (-1,)),),
        columns=("name", "data"),
    )

    request = parse_infer({"inputs": [{"name": 1.0, "data": 2.0}]}, signature)

    assert request.records
    assert request.inputs["x"].tolist() == [[1.0, 2.0]]


# --- the rest of the request -----------------------------------------------------------------


def test_the_id_and_parameters_are_kept() -> None:
    body = {"id": "r-7", "parameters": {"trace": True}, "inputs": [tensor_row()]}

    request = parse_infer(body, TABULAR)

    assert (request.id, request.parameters) == ("r-7", {"trace": True})


def test_a_request_without_an_id_or_parameters_has_none() -> None:
    request = parse_infer({"inputs": [tensor_row()]}, TABULAR)

    assert (request.id, request.parameters, request.outputs) == (None, {}, None)


def test_an_id_that_is_not_a_string_is_refused() -> None:
    assert refusal({"id": 42, "inputs": [tensor_row()]}) == "`id` must be a string"


def test_parameters_that_are_not_an_object_are_refused() -> None:
    assert refusal({"parameters": [1], "inputs": [tensor_row()]}) == (
        "`parameters` must be an object"
    )


def test_requested_outputs_are_kept_in_request_order() -> None:
    body = {"inputs": [tensor_row()], "outputs": [{"name": "proba"}, {"name": "label"}]}

    assert parse_infer(body, TABULAR).outputs == ["proba", "label"]


def test_an_unknown_requested_output_is_named_with_the_outputs_the_model_returns() -> None:
    body = {"inputs": [tensor_row()], "outputs": [{"name": "score"}]}

    assert refusal(body) == "unknown output `score`; the model returns: label, proba"


def test_an_empty_list_of_outputs_asks_for_all() -> None:
    body = {"inputs": [tensor_row()], "outputs": []}

    assert parse_infer(body, TABULAR).outputs is None


def test_records_may_request_outputs_too() -> None:
    body = {"inputs": [{"age": 41, "income": 1, "score": 0.7}], "outputs": [{"name": "label"}]}

    assert parse_infer(body, TABULAR).outputs == ["label"]


def test_a_body_that_is_not_json_is_refused() -> None:
    assert refusal(b'{"inputs": [').startswith("the request body is not valid JSON: ")


def test_a_body_that_is_not_an_object_is_refused() -> None:
    assert refusal(b"[1, 2, 3]") == "the request body must be a JSON object"


def test_a_request_without_inputs_is_refused() -> None:
    assert refusal(b'{"id": "1"}') == "the request has no `inputs`"


def test_a_request_with_empty_inputs_is_refused() -> None:
    assert refusal(b'{"inputs": []}') == "`inputs` is empty"


def test_inputs_that_are_not_a_list_are_refused() -> None:
    assert refusal(b'{"inputs": {"age": 41}}') == "`inputs` must be a list"


def test_an_already_parsed_body_is_taken() -> None:
    request = parse_infer({"inputs": [tensor_row()]}, TABULAR)

    assert isinstance(request, InferRequest)
    assert request.inputs["features"].tolist() == [[1, 2, 3]]


# --- errors ----------------------------------------------------------------------------------


def test_an_error_is_400_with_the_specs_error_body() -> None:
    error = OipError("missing input `x`")

    assert (error.status, error.body()) == (400, {"error": "missing input `x`"})


def test_an_unknown_model_is_404() -> None:
    error = OipError.unknown_model("churn", "9")

    assert (error.status, error.body()) == (404, {"error": "unknown version `9` of model `churn`"})


# --- responses -------------------------------------------------------------------------------


def test_a_response_carries_the_model_version_id_and_flat_outputs() -> None:
    outputs = {
        "label": numpy.array([1, 0]),
        "proba": numpy.array([[0.25, 0.75], [0.5, 0.5]], dtype=numpy.float32),
    }

    response = orjson.loads(encode_infer("churn", "3", "pred-1", outputs))

    assert response == {
        "model_name": "churn",
        "model_version": "3",
        "id": "pred-1",
        "outputs": [
            {"name": "label", "shape": [2], "datatype": "INT64", "data": [1, 0]},
            {"name": "proba", "shape": [2, 2], "datatype": "FP32", "data": [0.25, 0.75, 0.5, 0.5]},
        ],
    }


def test_an_unversioned_model_leaves_model_version_out() -> None:
    response = orjson.loads(encode_infer("churn", None, "p", {"label": numpy.array([1])}))

    assert "model_version" not in response


def test_only_requested_outputs_are_encoded_in_the_requested_order() -> None:
    outputs = {"label": numpy.array([1]), "proba": numpy.array([[0.5, 0.5]])}

    response = orjson.loads(encode_infer("m", None, "p", outputs, requested=["proba"]))

    assert [output["name"] for output in response["outputs"]] == ["proba"]


def test_requesting_an_output_the_model_did_not_produce_is_a_bug() -> None:
    with pytest.raises(ValueError, match="no output `proba`"):
        encode_infer("m", None, "p", {"label": numpy.array([1])}, requested=["proba"])


def test_fp32_outputs_are_written_as_their_shortest_decimal() -> None:
    body = encode_infer("m", None, "p", {"y": numpy.array([0.1], dtype=numpy.float32)})

    assert b'"data":[0.1]' in body


def test_bytes_outputs_are_strings() -> None:
    outputs = {
        "objects": numpy.array(["yes", b"no"], dtype=object),
        "unicode": numpy.array(["oui", "non"]),
    }

    response = orjson.loads(encode_infer("m", None, "p", outputs))

    assert [(o["datatype"], o["data"]) for o in response["outputs"]] == [
        ("BYTES", ["yes", "no"]),
        ("BYTES", ["oui", "non"]),
    ]


def test_output_datatypes_follow_the_arrays_dtypes() -> None:
    outputs = {
        "b": numpy.array([True]),
        "i": numpy.array([1], dtype=numpy.int8),
        "u": numpy.array([1], dtype=numpy.uint64),
        "h": numpy.array([1.5], dtype=numpy.float16),
        "d": numpy.array([1.5]),
    }

    response = orjson.loads(encode_infer("m", None, "p", outputs))

    assert [o["datatype"] for o in response["outputs"]] == [
        "BOOL",
        "INT8",
        "UINT64",
        "FP16",
        "FP64",
    ]
    assert response["outputs"][0]["data"] == [True]


def test_a_non_contiguous_output_is_written_in_row_major_order() -> None:
    transposed = numpy.array([[1, 2, 3], [4, 5, 6]]).T

    response = orjson.loads(encode_infer("m", None, "p", {"y": transposed}))

    assert response["outputs"][0]["shape"] == [3, 2]
    assert response["outputs"][0]["data"] == [1, 4, 2, 5, 3, 6]


def test_a_0d_output_has_an_empty_shape_and_one_value() -> None:
    response = orjson.loads(encode_infer("m", None, "p", {"y": numpy.asarray(0.5)}))

    assert response["outputs"][0] == {"name": "y", "shape": [], "datatype": "FP64", "data": [0.5]}


def test_numpy_scalars_in_response_parameters_are_plain_json() -> None:
    body = encode_infer(
        "m", None, "p", {"y": numpy.array([1])}, parameters={"n": numpy.int64(3), "ok": numpy.True_}
    )

    assert orjson.loads(body)["parameters"] == {"n": 3, "ok": True}


# --- records responses -----------------------------------------------------------------------


def test_records_with_one_output_predict_a_value_per_row() -> None:
    body = encode_records({"label": numpy.array([1, 0, 1])}, "pred-1")

    assert orjson.loads(body) == {"id": "pred-1", "predictions": [1, 0, 1]}


def test_records_with_a_2d_output_predict_a_list_per_row() -> None:
    proba = numpy.array([[0.25, 0.75], [0.5, 0.5]], dtype=numpy.float32)

    body = encode_records({"proba": proba}, "p")

    assert orjson.loads(body)["predictions"] == [[0.25, 0.75], [0.5, 0.5]]


def test_records_with_several_outputs_predict_an_object_per_row() -> None:
    outputs = {
        "label": numpy.array(["churn", "stay"], dtype=object),
        "proba": numpy.array([[0.1, 0.9], [0.8, 0.2]], dtype=numpy.float32),
    }

    body = encode_records(outputs, "p")

    assert orjson.loads(body)["predictions"] == [
        {"label": "churn", "proba": [0.1, 0.9]},
        {"label": "stay", "proba": [0.8, 0.2]},
    ]


def test_records_outputs_of_different_lengths_are_a_bug() -> None:
    with pytest.raises(ValueError, match="disagree on the number of rows"):
        encode_records({"a": numpy.array([1, 2]), "b": numpy.array([1])}, "p")


# --- metadata --------------------------------------------------------------------------------


def test_model_metadata_lists_the_versions_platform_and_tensors() -> None:
    metadata = model_metadata("churn", ["1", "2"], "sklearn_skops", TABULAR)

    assert metadata == {
        "name": "churn",
        "versions": ["1", "2"],
        "platform": "sklearn_skops",
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 3]}],
        "outputs": [
            {"name": "label", "datatype": "INT64", "shape": [-1]},
            {"name": "proba", "datatype": "FP32", "shape": [-1, 2]},
        ],
    }


# --- a real client: tritonclient -------------------------------------------------------------


def test_a_tritonclient_request_parses_to_the_arrays_it_was_built_from() -> None:
    rows = numpy.array([[41.0, 52_000.0, 0.7], [23.0, 18_000.0, 0.1]], dtype=numpy.float32)
    body, header_length = triton_request([triton_input("features", rows, "FP32")], "r1")

    request = parse_infer(body, TABULAR)

    assert header_length is None
    assert request.id == "r1"
    numpy.testing.assert_array_equal(request.inputs["features"], rows)


def test_tritonclients_bytes_and_bool_inputs_parse() -> None:
    inputs = [
        triton_input("age", numpy.array([41, 23], dtype=numpy.int64), "INT64"),
        triton_input("city", numpy.array([b"Oslo", "Lyon"], dtype=object), "BYTES"),
        triton_input("member", numpy.array([True, False]), "BOOL"),
    ]
    body, _ = triton_request(inputs)

    request = parse_infer(body, PER_FEATURE)

    assert request.inputs["city"].tolist() == ["Oslo", "Lyon"]
    assert request.inputs["member"].tolist() == [True, False]


def test_tritonclients_requested_outputs_and_custom_parameters_are_kept() -> None:
    row = numpy.array([[41.0, 52_000.0, 0.7]], dtype=numpy.float32)
    outputs = [InferRequestedOutput("proba", binary_data=False)]
    body, _ = triton_request([triton_input("features", row, "FP32")], "", outputs, tenant="acme")

    request = parse_infer(body, TABULAR)

    assert request.outputs == ["proba"]
    assert request.parameters == {"tenant": "acme"}


def test_tritonclient_asks_for_binary_outputs_when_it_names_none() -> None:
    # Triton's binary extension; the JSON response is still what the client reads (see below).
    row = numpy.array([[41.0, 52_000.0, 0.7]], dtype=numpy.float32)
    body, _ = triton_request([triton_input("features", row, "FP32")])

    assert parse_infer(body, TABULAR).parameters == {"binary_data_output": True}


def test_tritonclient_reads_back_the_response() -> None:
    outputs = {
        "label": numpy.array([1, 0]),
        "proba": numpy.array([[0.1, 0.9], [0.8, 0.2]], dtype=numpy.float32),
        "reason": numpy.array(["tenure", "price"], dtype=object),
        "flag": numpy.array([True, False]),
    }

    result = InferResult.from_response_body(encode_infer("churn", "3", "pred-1", outputs))

    assert result.get_response()["id"] == "pred-1"
    for name, array in outputs.items():
        numpy.testing.assert_array_equal(result.as_numpy(name), array)
        assert result.as_numpy(name).dtype == array.dtype


def test_tritonclients_binary_input_is_refused_with_how_to_send_json() -> None:
    row = numpy.array([[41.0, 52_000.0, 0.7]], dtype=numpy.float32)
    given = InferInput("features", [1, 3], "FP32")
    given.set_data_from_numpy(row)  # binary_data=True, the client's default
    body, header_length = triton_request([given])

    assert header_length is not None
    assert "binary_data=False" in refusal(body)  # JSON then raw bytes: not JSON at all
    assert "binary_data=False" in refusal(body[:header_length])  # the JSON part alone
