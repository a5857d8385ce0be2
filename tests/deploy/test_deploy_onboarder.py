"""The xApp descriptor against the O-RAN SC onboarder's own schemas (``../shared/oran``):
the one ``dms_cli onboard`` enforces and the documented one, each with its controls
section replaced by deploy/xapp/schema.json, as the onboarder does.

The two upstream schemas contradict each other on two keys, and no descriptor passes both:
``containers[].command`` (enforced: an array of strings; documented: a string) and
``metrics`` (enforced: an object; documented: an array). The descriptor follows the
enforced schema on both, since a descriptor the onboarder rejects cannot be deployed; it
keeps each metric in the documented item form, keyed by its name. Against the documented
schema it must fail on exactly those two keys and nothing else.
"""

from __future__ import annotations

import copy
import json
import re
import tomllib

import jsonschema
import pytest
from support.loop import ROOT
from support.shared import shared_file

DESCRIPTOR = ROOT / "deploy" / "xapp" / "config-file.json"
CONTROLS_SCHEMA = ROOT / "deploy" / "xapp" / "schema.json"
# The keys on which the documented schema contradicts the enforced one, and the JSON
# Schema keyword that fails there.
CONTRADICTIONS = {("containers", 0, "command"): "type", ("metrics",): "type"}


def _with_controls(schema: dict) -> dict:
    """The onboarder's substitution: its placeholder controls schema becomes the xApp's."""
    out = copy.deepcopy(schema)
    placeholder = out["properties"]["controls"]
    assert placeholder == {"required": ["__empty_control_section__"]}, placeholder
    out["properties"]["controls"] = json.loads(CONTROLS_SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(out)
    return out


@pytest.fixture(scope="module")
def descriptor() -> dict:
    return json.loads(DESCRIPTOR.read_text())


@pytest.fixture(scope="module")
def enforced() -> dict:
    return _with_controls(json.loads(shared_file("oran", "onboarder-schema.json").read_text()))


@pytest.fixture(scope="module")
def documented() -> dict:
    return _with_controls(json.loads(shared_file("oran", "onboarder-schema-docs.json").read_text()))


def _errors(instance: dict, schema: dict) -> dict[tuple, str]:
    return {
        tuple(e.absolute_path): e.validator
        for e in jsonschema.Draft7Validator(schema).iter_errors(instance)
    }


def test_descriptor_passes_the_schema_the_onboarder_enforces(descriptor, enforced) -> None:
    assert _errors(descriptor, enforced) == {}
    # The schema bites: the documented forms of the two contradicting keys, a bad control
    # and a bad version are each rejected.
    as_string = copy.deepcopy(descriptor)
    as_string["containers"][0]["command"] = " ".join(descriptor["containers"][0]["command"])
    as_array = {**descriptor, "metrics": list(descriptor["metrics"].values())}
    bad_control = {**descriptor, "controls": {**descriptor["controls"], "rapp_deadline_ms": -1}}
    for bad, path in (
        (as_string, ("containers", 0, "command")),
        (as_array, ("metrics",)),
        (bad_control, ("controls", "rapp_deadline_ms")),
        ({**descriptor, "version": "1.0"}, ("version",)),
    ):
        assert path in _errors(bad, enforced), path


def test_descriptor_meets_the_documented_form_but_where_it_contradicts(
    descriptor, documented
) -> None:
    assert _errors(descriptor, documented) == CONTRADICTIONS
    # Given the documented forms of those two keys, it passes the documented schema whole.
    documented_form = copy.deepcopy(descriptor)
    documented_form["containers"][0]["command"] = " ".join(descriptor["containers"][0]["command"])
    documented_form["metrics"] = list(descriptor["metrics"].values())
    assert _errors(documented_form, documented) == {}


def test_metrics_are_keyed_by_name_in_the_documented_item_form(descriptor) -> None:
    for key, metric in descriptor["metrics"].items():
        assert metric["name"] == key
        assert metric["type"] in {"counter", "gauge", "histogram", "summary"}, key
        assert re.fullmatch(r"xapp_[a-z_]+", key), key


def test_the_container_command_is_the_images_entrypoint(descriptor) -> None:
    command = descriptor["containers"][0]["command"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert command[0] in scripts and scripts[command[0]].startswith("xapp_composer.")
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    stage = dockerfile.split("AS xapp-composer", 1)[1].split("\nFROM ", 1)[0]
    assert f'ENTRYPOINT ["{command[0]}"]' in stage
    assert f"CMD {json.dumps(command[1:])}" in stage
