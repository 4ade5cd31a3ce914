"""Segmentation parameters (checks, defaults, UI schema), block plans and checksums."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from tiler.checksum import file_sha256, tree_checksum
from tiler.errors import InvalidParameter
from tiler.segmentation import ParameterError, describe_methods, validate_params
from tiler.segmentation.blocks import BLOCK_VOXEL_CAP, plan_blocks


def test_defaults_are_filled_in() -> None:
    assert validate_params({"method": "threshold"}, 2, 1) == {
        "method": "threshold", "channel": 0, "algorithm": "otsu", "value": None,
        "polarity": "bright", "min_size": 0, "connectivity": 1}
    local = validate_params({"method": "local", "block_size": 31}, 3, 2)
    assert local["block_size"] == 31 and local["statistic"] == "gaussian" and local["offset"] == 0
    watershed = validate_params({"method": "watershed"}, 2, 1)
    assert watershed["min_distance"] == 5 and watershed["max_object_radius"] == 25
    assert "connectivity" not in watershed


def test_values_are_normalised_and_validation_is_idempotent() -> None:
    raw = {"method": "threshold", "algorithm": "manual", "value": 12, "min_size": 4.0,
           "connectivity": 3, "polarity": "dark"}
    params = validate_params(raw, 3, 1)
    assert params["value"] == 12.0 and isinstance(params["value"], float)
    assert params["min_size"] == 4 and isinstance(params["min_size"], int)
    assert params["connectivity"] == "full"  # 3 in 3D: edges and corners
    assert validate_params(params, 3, 1) == params
    assert validate_params({"method": "threshold", "connectivity": 2}, 3, 1)["connectivity"] == 2
    assert validate_params({"method": "threshold", "value": 5}, 2, 1)["value"] is None
    assert raw["min_size"] == 4.0  # the input is not modified


@pytest.mark.parametrize(("raw", "message"), [
    ({"method": "threshold", "min_size": -3}, "threshold.min_size must be an integer >= 0, got -3"),
    ({"method": "foo"}, "unknown method 'foo'; use one of threshold, local, watershed, "
                        "classifier"),
    ({}, "no method given; use one of threshold, local, watershed, classifier"),
    ({"method": "local", "block_size": 40}, "local.block_size must be an odd integer between 3 "
                                            "and 1001, got 40"),
    ({"method": "threshold", "algorithm": "manual"}, "threshold.value is required when "
                                                     "algorithm is 'manual'"),
    ({"method": "threshold", "algorithm": "triangle"}, "threshold.algorithm must be one of otsu, "
                                                       "li, yen, manual, got 'triangle'"),
    ({"method": "threshold", "polarity": "up"}, "threshold.polarity must be one of bright, "
                                                "dark, got 'up'"),
    ({"method": "threshold", "channel": 2}, "threshold.channel must be between 0 and 1 (the "
                                           "image has 2 channels), got 2"),
    ({"method": "threshold", "connectivity": 4}, "threshold.connectivity must be 1 (sides "
                                                 "only) or 'full' (with edges and corners), "
                                                 "got 4"),
    ({"method": "watershed", "min_distance": True}, "watershed.min_distance must be an integer "
                                                    "between 1 and 500, got True"),
    ({"method": "local", "offset": "a"}, "local.offset must be a number, got 'a'"),
    ({"method": "local", "offset": float("nan")}, "local.offset must be a number, got nan"),
    ({"method": "threshold", "sigma": 2}, "unknown parameter 'sigma' for method 'threshold'; "
                                          "valid parameters: algorithm, channel, connectivity, "
                                          "min_size, polarity, value"),
    ({"method": "classifier", "scribbles": "x"}, "classifier.scribbles must be a list, got str"),
    ({"method": "classifier", "class_names": ["a", 2]}, "classifier.class_names must be a list "
                                                        "of strings"),
])
def test_bad_params_say_exactly_what_is_wrong(raw, message) -> None:
    with pytest.raises(ParameterError) as caught:
        validate_params(raw, 2, 2)
    assert str(caught.value) == message
    assert isinstance(caught.value, InvalidParameter) and isinstance(caught.value, ValueError)


def test_parameters_must_be_a_dict() -> None:
    with pytest.raises(ParameterError, match="parameters must be an object"):
        validate_params([("method", "threshold")], 2, 1)  # type: ignore[arg-type]


def test_classifier_settings_are_kept_as_given() -> None:
    raw = {"method": "classifier", "scribbles": [{"class": 0, "points": [[1, 2], [3, 4]]}],
           "class_names": ["background", "cell"], "features": {"sigma_max": 4},
           "classifier_id": "abc"}
    params = validate_params(raw, 2, 1)
    assert {key: params[key] for key in raw} == raw
    assert params["min_size"] == 0 and params["connectivity"] == 1


def test_describe_methods_is_a_json_schema_the_defaults_follow() -> None:
    methods = describe_methods()
    assert [method["name"] for method in methods] == ["threshold", "local", "watershed",
                                                      "classifier"]
    json.dumps(methods)  # JSON-able
    for method in methods:
        assert method["label"] and method["description"]
        for param in method["params"]:
            assert set(param) == {"name", "type", "default", "min", "max", "choices", "help"}
            assert param["type"] in ("int", "float", "choice", "bool") and param["help"]
        defaults = {param["name"]: param["default"] for param in method["params"]}
        if method["name"] == "classifier":
            continue
        params = validate_params({"method": method["name"]}, 2, 1)
        assert {key: params[key] for key in defaults} == defaults
    connectivity = next(p for p in methods[0]["params"] if p["name"] == "connectivity")
    assert connectivity["choices"] == [1, "full"] and connectivity["default"] == 1


def test_block_plans_follow_the_budget_not_the_processes() -> None:
    huge = (100_000, 80_000)
    plans = [plan_blocks(huge, (256, 256), 0, 48, 1 << 30, processes) for processes in (1, 2, 8)]
    assert len({plan.block for plan in plans}) == 1  # the same blocks, whatever the workers
    assert [plan.workers for plan in plans] == [1, 2, 5]  # 5 blocks of 192 MiB fit 1 GiB
    plan = plans[0]
    assert plan.block == (2048, 2048) and plan.chunk == (256, 256)
    assert plan.block_bytes <= BLOCK_VOXEL_CAP * 48
    small = plan_blocks(huge, (256, 256), 0, 48, 64 << 20, 8)
    assert small.block == (768, 768)  # 64 MiB / (2 x 48 bytes) ~ 836^2, in whole chunks
    assert small.workers == 2 and small.workers * small.block_bytes <= 64 << 20
    haloed = plan_blocks((500, 300, 300), (64, 64, 64), 20, 96, 256 << 20, 2)
    assert haloed.block == (64, 64, 64)  # (256 MiB / 192) ** (1/3) - 2 x 20 = 72, whole chunks
    assert haloed.block_bytes == 96 * ((haloed.block[0] + 40) ** 3)
    assert haloed.block_bytes * 2 <= 256 << 20
    thin = plan_blocks((3, 20_000), (3, 256), 0, 48, 1 << 30, 1)  # a short axis is taken whole
    assert thin.block == (3, 20_000)
    with pytest.raises(ValueError, match="memory_budget of 1000000 bytes is too small"):
        plan_blocks(huge, (256, 256), 50, 96, 1_000_000, 1)


def test_file_and_tree_checksums(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_bytes(b"alpha")
    (tree / "sub" / "b.bin").write_bytes(bytes(range(256)) * 5000)
    assert file_sha256(tree / "a.txt") == hashlib.sha256(b"alpha").hexdigest()
    first = tree_checksum(tree)
    copy = tmp_path / "copy"
    shutil.copytree(tree, copy)
    (copy / "empty-folder").mkdir()
    assert tree_checksum(copy) == first  # names and bytes only
    (copy / "sub" / "b.bin").write_bytes(bytes(range(256)) * 4999 + bytes(range(255)) + b"!")
    assert tree_checksum(copy) != first
    shutil.copytree(tree, tmp_path / "renamed")
    (tmp_path / "renamed" / "a.txt").rename(tmp_path / "renamed" / "c.txt")
    assert tree_checksum(tmp_path / "renamed") != first
    assert tree_checksum(tree / "a.txt") == tree_checksum(copy / "a.txt") != file_sha256(
        tree / "a.txt")
    with pytest.raises(FileNotFoundError):
        tree_checksum(tmp_path / "missing")
