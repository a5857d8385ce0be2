"""The committed trust files of deploy/: the ACL is servicekit.acl's rendering byte for
byte, the Helm chart ships the same files, the broker configuration keeps what the loop
relies on, and every image opts in to listening beyond loopback explicitly."""

from __future__ import annotations

import re

import pytest
import yaml

from deploy.deploy_support import ACL, BROKER_INIT, CHART, DEPLOY, PROBE, directives, password_var
from lameta_stack.broker import MESSAGE_SIZE_LIMIT
from servicekit.acl import USERS, mosquitto_acl


def test_the_committed_acl_is_the_rendering_of_servicekit_acl() -> None:
    assert ACL.read_bytes() == mosquitto_acl().encode()
    assert (CHART / "files" / "acl").read_bytes() == mosquitto_acl().encode()


@pytest.mark.parametrize(
    ("original", "copy"),
    [
        (DEPLOY / "mosquitto" / "mosquitto.conf", "mosquitto.conf"),
        (BROKER_INIT, "mosquitto-init.sh"),
        (PROBE, "rapp_health.py"),
        (DEPLOY / "xapp" / "config-file.json", "config-file.json"),
        (DEPLOY / "mosquitto" / "guard.conf", "mosquitto-guard.conf"),
        (DEPLOY / "mosquitto" / "log-rotate.sh", "log-rotate.sh"),
    ],
)
def test_the_chart_ships_the_same_files(original, copy) -> None:
    assert (CHART / "files" / copy).read_bytes() == original.read_bytes()


def test_the_broker_config_is_tls_only_with_users_acl_and_limits() -> None:
    conf = directives((DEPLOY / "mosquitto" / "mosquitto.conf").read_text())
    d = dict(conf)
    assert [v for k, v in conf if k == "listener"] == ["8883 0.0.0.0"]  # one listener, TLS
    # Its TLS files follow the listener line (per-listener settings).
    after = [k for k, _ in conf[[k for k, _ in conf].index("listener") :]]
    assert {"cafile", "certfile", "keyfile"} <= set(after)
    assert d["allow_anonymous"] == "false"
    assert d["password_file"] == "/mosquitto/auth/passwd"
    assert d["acl_file"] == "/mosquitto/auth/acl"
    assert d["require_certificate"] == "false"  # clients log in with user and password
    assert int(d["message_size_limit"]) == MESSAGE_SIZE_LIMIT == 4 * 1024 * 1024
    assert d["set_tcp_nodelay"] == "true"
    assert d["persistence"] == "true"


def test_every_identity_has_a_password_variable_in_compose_and_helm() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    init_env = compose["services"]["mosquitto-auth"]["environment"]
    assert set(init_env) == {password_var(u) for u in USERS}
    for var, value in init_env.items():
        assert value == f"${{{var}:?set {var} in deploy/.env}}", var  # required, no default
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values["broker"]["users"]) == set(USERS)
    for user, cfg in values["broker"]["users"].items():
        assert cfg == {"existingSecret": "", "password": ""}, user  # nothing in clear


def test_the_broker_init_reads_the_users_from_the_acl() -> None:
    text = BROKER_INIT.read_text()
    assert "sed -n 's/^user  *//p' \"$ACL_SRC\"" in text
    users = re.findall(r"^user (\S+)$", ACL.read_text(), re.M)
    assert users == list(USERS)


@pytest.mark.parametrize(
    ("target", "variables"),
    [
        ("sim-ric", ["SIM_METRICS_HOST"]),
        ("rapp-intent", ["RAPP_HOST", "RAPP_METRICS_HOST"]),
        ("xapp-composer", ["XAPP_HEALTH_HOST"]),
        ("rapp-negotiation", ["NEGO_HEALTH_HOST"]),
        ("xapp-guard", ["GUARD_METRICS_HOST"]),
    ],
)
def test_images_opt_in_to_every_interface_explicitly(target, variables) -> None:
    """The services bind loopback unless told otherwise; each image says 0.0.0.0 for
    what must be reached from outside its container, with a comment saying why."""
    text = (DEPLOY / "Dockerfile").read_text()
    stage = text.split(f"AS {target}\n", 1)[1].split("\nFROM ", 1)[0]
    for var in variables:
        assert re.search(rf"^\s*(ENV )?{var}=0\.0\.0\.0\b", stage, re.M), (target, var)
    comment = stage[stage.index("USER 10001") : stage.index("ENV ")]
    assert "loopback" in comment, target


def test_secrets_made_by_the_operator_stay_out_of_git() -> None:
    ignored = (DEPLOY / ".gitignore").read_text().split()
    assert {".env", "pki/", "trust/"} <= set(ignored)


def test_the_negotiation_image_ships_its_package_and_classifier_and_names_real_settings() -> None:
    from rapp_negotiation.arbitral import CLASSIFIER_DIR
    from rapp_negotiation.settings import NegoLLMSettings, NegoSettings

    text = (DEPLOY / "Dockerfile").read_text()
    assert "COPY rapp_negotiation ./rapp_negotiation" in text.split("\nFROM ", 2)[1]
    assert "!rapp_negotiation/**" in (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    stage = text.split("AS rapp-negotiation\n", 1)[1].split("\nFROM ", 1)[0]
    env = dict(re.findall(r"^\s*(?:ENV )?(NEGO_[A-Z_]+)=(\S+)", stage, re.M))
    for var in env:
        cls, name = ((NegoLLMSettings, var[len("NEGO_LLM_") :]) if var.startswith("NEGO_LLM_")
                     else (NegoSettings, var[len("NEGO_") :]))  # fmt: skip
        assert name.lower() in cls.model_fields, var
    shipped = CLASSIFIER_DIR.relative_to(DEPLOY.parent).as_posix()
    assert f"COPY {shipped} ./{shipped}" in stage
    assert env["NEGO_ARBITRAL_DIR"] == f"/app/{shipped}"
    assert env["NEGO_LLM_CACHE_DIR"].startswith("/data/") and 'VOLUME ["/data"]' in stage


def test_the_guard_image_ships_its_package_and_detector_and_names_real_settings() -> None:
    from xapp_guard.settings import DEFAULT_MODEL, GuardSettings

    text = (DEPLOY / "Dockerfile").read_text()
    assert "COPY xapp_guard ./xapp_guard" in text.split("\nFROM ", 2)[1]
    assert "!xapp_guard/**" in (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    stage = text.split("AS xapp-guard\n", 1)[1].split("\nFROM ", 1)[0]
    # Torch-free, like the xApp: onnxruntime from the xapp extra.
    assert "pip install '.[xapp]'" in stage and "torch" not in stage
    env = dict(re.findall(r"^\s*(?:ENV )?(GUARD_[A-Z_]+)=(\S+)", stage, re.M))
    for var in env:
        assert var[len("GUARD_") :].lower() in GuardSettings.model_fields, var
    shipped = DEFAULT_MODEL.relative_to(DEPLOY.parent)
    card = shipped.with_suffix(".card.json")
    assert f"COPY {shipped.as_posix()} {card.as_posix()} ./{shipped.parent.as_posix()}/" in stage
    assert env["GUARD_MODEL"] == f"/app/{shipped.as_posix()}"
    assert env["GUARD_METRICS_PORT"] == "9467"
