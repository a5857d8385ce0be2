"""The deploy/ artefacts, checked as far as this machine can (no Docker engine, no Helm):
the O-RAN SC xApp descriptor against the onboarder's descriptor structure and its controls
against deploy/xapp/schema.json and the xApp's settings; the compose file, Dockerfile and
Helm chart against the code they start (tests/deploy runs Mosquitto on its config)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml
from support.loop import ROOT

from rapp_intent.settings import RappSettings
from servicekit.health import ALIVE_PATH, READY_PATH
from sim_ric.settings import SimSettings
from xapp_composer.settings import XappSettings

DEPLOY = ROOT / "deploy"
DESCRIPTOR = DEPLOY / "xapp" / "config-file.json"
CONTROLS_SCHEMA = DEPLOY / "xapp" / "schema.json"
CHART = DEPLOY / "helm" / "lameta-ric"

# The structure the O-RAN SC xApp onboarder requires of a descriptor (its root schema,
# written out here for what this xApp uses; "controls" is checked by schema.json).
PROBE = {
    "type": "object",
    "required": ["httpGet", "initialDelaySeconds", "periodSeconds"],
    "properties": {
        "httpGet": {
            "type": "object",
            "required": ["path", "port"],
            "properties": {"path": {"type": "string"}, "port": {"type": "integer"}},
        },
        "initialDelaySeconds": {"type": "integer"},
        "periodSeconds": {"type": "integer"},
    },
}
DESCRIPTOR_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": [
        "name",
        "version",
        "containers",
        "messaging",
        "controls",
        "livenessProbe",
        "readinessProbe",
    ],
    "properties": {
        "name": {
            "type": "string",
            "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
            "maxLength": 63,
        },
        "version": {"type": "string", "pattern": r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$"},
        "containers": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name", "image"],
                "properties": {
                    "name": {"type": "string"},
                    "image": {
                        "type": "object",
                        "required": ["registry", "name", "tag"],
                        "properties": {
                            "registry": {
                                "type": "string",
                                "pattern": r"^[A-Za-z0-9\.-]+\.[A-Za-z]+(?::\d+)?$",
                            },
                            "name": {"type": "string"},
                            "tag": {"type": "string"},
                        },
                    },
                    "command": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
        "livenessProbe": PROBE,
        "readinessProbe": PROBE,
        "messaging": {
            "type": "object",
            "required": ["ports"],
            "properties": {
                "ports": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "container", "port"],
                        "properties": {"port": {"type": "integer"}},
                    },
                }
            },
        },
        "metrics": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["objectName", "objectInstance", "name", "type", "description"],
            },
        },
        "controls": {"type": "object"},
    },
}


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), f"a key given twice: {keys}"
    return dict(pairs)


@pytest.fixture(scope="module")
def descriptor() -> dict:
    # A key given twice would load as its last value: refused instead.
    return json.loads(DESCRIPTOR.read_text(), object_pairs_hook=_unique_keys)


def test_descriptor_has_the_onboarders_structure(descriptor) -> None:
    jsonschema.Draft7Validator.check_schema(DESCRIPTOR_SCHEMA)
    jsonschema.validate(descriptor, DESCRIPTOR_SCHEMA)
    container = descriptor["containers"][0]["name"]
    assert all(p["container"] == container for p in descriptor["messaging"]["ports"])


def test_descriptor_controls_validate_against_schema_json(descriptor) -> None:
    schema = json.loads(CONTROLS_SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(descriptor["controls"], schema)
    bad = {**descriptor["controls"], "rapp_deadline_ms": -1}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**descriptor["controls"], "no_such_control": 1}, schema)


def test_controls_schema_describes_the_xapp_settings() -> None:
    schema = json.loads(CONTROLS_SCHEMA.read_text())
    fields = XappSettings.model_fields
    assert set(schema["properties"]) <= set(fields), set(schema["properties"]) - set(fields)
    kinds = {"string": str, "integer": int, "number": float, "boolean": bool}
    for name, prop in schema["properties"].items():
        default = fields[name].default
        types = [t for t in type_names(prop["type"]) if t != "null"]
        if default is not None and not callable(default) and types != ["string"]:
            assert any(isinstance(default, kinds[t]) for t in types) or (
                "number" in types and isinstance(default, int)
            ), (name, default)
        if default is not None and not callable(default):  # the default is a valid control
            value = str(default) if isinstance(default, Path) else default
            jsonschema.validate({name: value}, {**schema, "required": []})


WIRED = {"tls_ca", "tls_cert", "tls_key", "tls_insecure", "rapp_tls_ca", "rapp_tls_cert",
         "rapp_tls_key", "policy_public_key"}  # fmt: skip
"""Settings the deployment wires from mounted Secrets and ConfigMaps (files, keys), never
descriptor controls."""
CHART_XAPP_KEYS = {"replicas", "shareGroup", "autoscaling", "healthPort", "resources"}
"""``values.yaml`` keys of ``xapp`` that shape the Deployment rather than name a setting."""
CHART_LEAVES = {
    "network": "the release's top-level network value",
    "rapp": "the chart's own rApp Service",
    "policy": "policy.name, in the image",
    "health_port": "xapp.healthPort",
    "mqtt_persistent_session": "set for replicas by the chart",
    **dict.fromkeys(
        ("rapp_retry_after", "rapp_health_period", "policy_reload_period", "fallback_window",
         "dedup_capacity", "inbound_queue", "outcome_queue", "repair_infeasible",
         "mqtt_protocol", "shutdown_grace", "log_level", "log_format"),
        "the descriptor's value",
    ),
}  # fmt: skip
"""Descriptor controls the chart has no value of its own for, and where they come from."""


def type_names(value: str | list[str]) -> list[str]:
    """A JSON schema ``type``: one name or a list of them."""
    return value if isinstance(value, list) else [value]


def _snake(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()


def test_every_setting_is_a_descriptor_control_or_wired() -> None:
    """A new XappSettings field fails here until deploy/xapp/schema.json lists it (the
    onboarder refuses a control its schema does not name) or it is wired from a file."""
    schema = json.loads(CONTROLS_SCHEMA.read_text())["properties"]
    assert set(XappSettings.model_fields) - set(schema) == WIRED
    assert not WIRED & set(schema)


def test_every_descriptor_control_has_a_chart_value_or_a_reason(descriptor) -> None:
    """A control added to the descriptor fails here until the Helm chart either exposes it
    (``xapp.<camelCase>`` in values.yaml, passed as ``XAPP_<NAME>``) or says why not."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())["xapp"]
    exposed = {_snake(k) for k in values if k not in CHART_XAPP_KEYS}
    assert exposed <= set(XappSettings.model_fields), exposed - set(XappSettings.model_fields)
    missing = set(descriptor["controls"]) - exposed - set(CHART_LEAVES)
    assert not missing, f"controls the chart neither exposes nor explains: {sorted(missing)}"
    assert not exposed & set(CHART_LEAVES)
    template = (CHART / "templates/xapp.yaml").read_text()
    schema = json.loads(CONTROLS_SCHEMA.read_text())
    for key in values:
        if key in CHART_XAPP_KEYS:
            continue
        name = _snake(key)
        wiring = (
            rf"- name: XAPP_{name.upper()}\n\s+value: \{{\{{ \.Values\.xapp\.{key} \| quote \}}\}}"
        )
        assert re.search(wiring, template), key
        # The chart's default is a valid control, and the descriptor's when it has one.
        jsonschema.validate({**descriptor["controls"], name: values[key]}, schema)
        if name in descriptor["controls"]:
            assert values[key] == descriptor["controls"][name], key
    assert {"proposer_k", "proposer_min_agents"} <= exposed


def test_the_xapp_reads_its_descriptor_controls(descriptor, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("CONFIG_FILE", str(DESCRIPTOR))
    s = XappSettings()
    for key, value in descriptor["controls"].items():
        got = getattr(s, key)
        assert (str(got) if isinstance(got, Path) else got) == value, key
    # The environment overrides the descriptor; flags override both.
    monkeypatch.setenv("XAPP_RAPP", "elsewhere:1234")
    assert XappSettings().rapp == "elsewhere:1234"
    assert XappSettings(rapp="flag:1").rapp == "flag:1"
    # A typo in the controls is an error, not a silently ignored key.
    typo = tmp_path / "config-file.json"
    typo.write_text(json.dumps({**descriptor, "controls": {"rap": "x:1"}}))
    monkeypatch.setenv("CONFIG_FILE", str(typo))
    with pytest.raises(ValueError, match="unknown controls"):
        XappSettings()


def test_probes_use_the_paths_and_port_the_xapp_serves(descriptor) -> None:
    port = descriptor["controls"]["health_port"]
    for key, path in (("livenessProbe", ALIVE_PATH), ("readinessProbe", READY_PATH)):
        probe = descriptor[key]["httpGet"]
        assert "/" + probe["path"].lstrip("/") == path and probe["port"] == port
    assert any(p["port"] == port for p in descriptor["messaging"]["ports"])
    assert XappSettings.model_fields["health_port"].default == port


def _env_names(service: dict) -> set[str]:
    env = service.get("environment", {})
    return set(env) if isinstance(env, dict) else {e.split("=", 1)[0] for e in env}


def test_compose_file_wires_the_four_services() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"mosquitto", "sim-ric", "rapp", "xapp"} <= set(services)
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    for name in ("sim-ric", "rapp", "xapp"):
        build = services[name]["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == (
            DEPLOY / "Dockerfile"
        ).resolve()
        assert build["target"] in _stages(dockerfile), build
    prefixes = {
        "sim-ric": ("SIM_", SimSettings),
        "rapp": ("RAPP_", RappSettings),
        "xapp": ("XAPP_", XappSettings),
    }
    for name, (prefix, cls) in prefixes.items():
        for var in _env_names(services[name]):
            if var == "XAPP_CONFIG_FILE":
                continue
            assert var.startswith(prefix) and var[len(prefix) :].lower() in cls.model_fields, var
    xapp = services["xapp"]
    assert xapp["depends_on"]["rapp"]["condition"] == "service_healthy"
    mounted = xapp["volumes"][0].split(":")
    assert (DEPLOY / mounted[0]).resolve() == DESCRIPTOR.resolve()
    assert xapp["environment"]["XAPP_CONFIG_FILE"] == mounted[1]
    broker_mount = services["mosquitto"]["volumes"][0].split(":")
    assert (DEPLOY / broker_mount[0]).resolve() == (DEPLOY / "mosquitto/mosquitto.conf").resolve()


def _seconds(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(s|m)", str(text))
    assert m, text
    return float(m.group(1)) * (60 if m.group(2) == "m" else 1)


def test_containers_are_given_longer_to_stop_than_their_own_shutdown_grace() -> None:
    """Docker and Kubernetes SIGKILL a container when their grace period runs out: it must
    outlast the service's own drain (RAPP_GRACE_S, XAPP_SHUTDOWN_GRACE), or in-flight
    calls are cut."""
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    own = {
        "rapp": RappSettings.model_fields["grace_s"].default,
        "xapp": XappSettings.model_fields["shutdown_grace"].default,
    }
    for name, grace in own.items():
        assert _seconds(services[name]["stop_grace_period"]) > grace, name
        helm = (DEPLOY / "helm/lameta-ric/templates" / f"{name}.yaml").read_text()
        period = re.search(r"terminationGracePeriodSeconds:\s*(\d+)", helm)
        assert period and int(period.group(1)) > grace, name


def test_dockerfile_targets_run_the_console_scripts() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    text = (DEPLOY / "Dockerfile").read_text()
    stages = _stages(text)
    for target in ("sim-ric", "rapp-intent", "xapp-composer", "rapp-negotiation"):
        entry = json.loads(re.search(r"^ENTRYPOINT (.+)$", stages[target][1], re.M).group(1))
        assert entry[0] in scripts, (target, entry)
    # What the stages copy exists, and the ignore file lets it through.
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    for src in re.findall(r"^COPY (\S+) ", text, re.M):
        assert (ROOT / src).exists(), src
        top = src.split("/")[0]
        assert top in ("pyproject.toml", "README.md") or f"!{top}/**" in ignore, src
    # Each image installs its role's extra only: no torch in the xApp's or the emulator's.
    built = {t: _built(stages, t) for t in ("sim-ric", "rapp-intent", "xapp-composer")}
    assert "pip install '.[xapp]'" in built["xapp-composer"]
    assert "torch" not in built["xapp-composer"] and "torch" not in built["sim-ric"]
    assert "pip install '.[rapp]'" in built["rapp-intent"]


def _stages(dockerfile: str) -> dict[str, tuple[str, str]]:
    """Stage name -> (base stage or image, instructions without comments)."""
    out: dict[str, tuple[str, str]] = {}
    name = None
    for line in dockerfile.splitlines():
        m = re.match(r"^FROM (\S+) AS (\S+)$", line)
        if m:
            name = m.group(2)
            out[name] = (m.group(1), "")
        elif name is not None and not line.lstrip().startswith("#"):
            base, body = out[name]
            out[name] = (base, body + line + "\n")
    return out


def _built(stages: dict[str, tuple[str, str]], target: str) -> str:
    """The instructions of a stage and of every stage it is built on."""
    text = ""
    while target in stages:
        base, body = stages[target]
        text, target = body + text, base
    return text


def test_helm_chart_is_consistent() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "lameta-ric"
    assert values["xapp"]["replicas"] == 1  # one persistent MQTT session per network
    # The chart ships copies of the descriptor and the broker config: the same files.
    assert (CHART / "files/config-file.json").read_text() == DESCRIPTOR.read_text()
    assert (CHART / "files/mosquitto.conf").read_text() == (
        DEPLOY / "mosquitto/mosquitto.conf"
    ).read_text()
    xapp = (CHART / "templates/xapp.yaml").read_text()
    assert f"path: {ALIVE_PATH}" in xapp and f"path: {READY_PATH}" in xapp
    for var in re.findall(r"name: (XAPP_[A-Z_]+)", xapp):
        assert var[5:].lower() in XappSettings.model_fields, var
    for path in (CHART / "templates").glob("*.yaml"):
        for ref in re.findall(r"\.Values\.([A-Za-z.]+)", path.read_text()):
            node = values
            for part in ref.split("."):
                assert isinstance(node, dict) and part in node, (path.name, ref)
                node = node[part]
