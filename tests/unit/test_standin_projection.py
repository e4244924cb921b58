"""The stand-in's computed projections follow MongoDB's documented rules.

Examples from MongoDB's manual ("Field Paths": nested fields, arrays of nested fields,
arrays of nested arrays; "Project Fields to Return from Query"), and the paths
result-access projects from our records.
"""

from __future__ import annotations

import pytest

from standins.projection import MISSING, evaluate_path, is_computed, project

PRODUCTS = [
    {"_id": 1, "item": "journal", "instock": [{"warehouse": "A"}, {"warehouse": "C"}]},
    {"_id": 2, "item": "notebook", "instock": [{"warehouse": "C"}]},
]


def test_a_nested_field_and_an_array_of_nested_fields() -> None:
    planet = {"_id": 7, "surfaceTemperatureC": {"min": None, "max": None, "mean": -197.2}}
    assert project(planet, {"nested_field": "$surfaceTemperatureC.mean"}) == {
        "_id": 7,
        "nested_field": -197.2,
    }
    assert [project(p, {"item": 1, "warehouses": "$instock.warehouse"}) for p in PRODUCTS] == [
        {"_id": 1, "item": "journal", "warehouses": ["A", "C"]},
        {"_id": 2, "item": "notebook", "warehouses": ["C"]},
    ]


def test_an_array_of_arrays_keeps_its_shape() -> None:
    document = {"_id": 1, "inventory": [[{"size": "S"}, {"size": "M"}], [{"size": "L"}]]}
    assert evaluate_path(document, "inventory.size") == [["S", "M"], ["L"]]


def test_elements_without_the_path_give_nothing_and_a_missing_path_leaves_the_field_out() -> None:
    document = {"_id": 1, "a": [{"b": 1}, {"c": 2}, 5, {"b": [3, 4]}], "s": "text"}
    assert evaluate_path(document, "a.b") == [1, [3, 4]]
    assert evaluate_path(document, "nowhere") is MISSING
    assert evaluate_path(document, "s.length") is MISSING
    assert project(document, {"x": "$nowhere", "_id": 0}) == {}


def test_inclusion_through_an_array_keeps_element_documents() -> None:
    document = {"_id": 1, "a": [{"b": 1, "c": 2}, {"c": 3}, 5], "d": 4}
    assert project(document, {"a.b": 1, "d": "$d"}) == {"_id": 1, "a": [{"b": 1}, {}], "d": 4}


def test_the_paths_result_access_projects_from_one_of_our_records() -> None:
    record = {
        "_id": "key",
        "location": "s3://bucket/key/attempt",
        "processing": {
            "data_processes": [
                {
                    "end_date_time": "2026-12-02T21:00:00Z",
                    "code": {
                        "input_data": [{"url": "s3://a/one"}, {"url": "s3://a/two"}],
                        "parameters": {"analysis_tag": "v0.2"},
                    },
                    "output_parameters": {"fitting_results": {"n_trials": 40}},
                }
            ]
        },
    }
    p = "processing.data_processes"
    assert project(
        record,
        {
            "_id": 1,
            "S3_location": "$location",
            "analysis_time": f"${p}.end_date_time",
            "CO_asset_id": f"${p}.code.input_data.url",
            "analysis_tag": f"${p}.code.parameters.analysis_tag",
            "n_trials": f"${p}.output_parameters.fitting_results.n_trials",
            "missing": f"${p}.output_parameters.fitting_results.cross_validation.x",
        },
    ) == {
        "_id": "key",
        "S3_location": "s3://bucket/key/attempt",
        "analysis_time": ["2026-12-02T21:00:00Z"],
        "CO_asset_id": [["s3://a/one", "s3://a/two"]],
        "analysis_tag": ["v0.2"],
        "n_trials": [40],
        "missing": [],
    }


def test_what_is_not_evaluated_is_refused() -> None:
    assert is_computed({"a": "$b"}) and not is_computed({"a": 1}) and not is_computed(None)
    with pytest.raises(ValueError, match="not evaluated"):
        project({"_id": 1, "a": 1}, {"a": 0, "b": "$a"})
    with pytest.raises(ValueError, match="not evaluated"):
        project({"_id": 1, "a": 1}, {"b": {"$size": "$a"}})
