"""Helpers of the deploy/ tests: paths, the scripts of deploy/ run as an operator would."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from support.mqtt import ROOT

DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "lameta-ric"
MAKE_CERTS = DEPLOY / "tls" / "make-certs.sh"
BROKER_INIT = DEPLOY / "mosquitto" / "init.sh"
TLS_INIT = DEPLOY / "tls" / "init.sh"
PROBE = DEPLOY / "probes" / "rapp_health.py"
ACL = DEPLOY / "mosquitto" / "acl"

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
needs_mosquitto_passwd = pytest.mark.skipif(
    shutil.which("mosquitto_passwd") is None, reason="needs mosquitto_passwd (mosquitto)"
)


def directives(text: str) -> list[tuple[str, str]]:
    """A Mosquitto configuration's (key, value) lines, in order, without comments."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            out.append((key, value.strip()))
    return out


def password_var(user: str) -> str:
    """The variable of ``user``'s password (compose .env, the broker's init script)."""
    return "MQTT_PASSWORD_" + user.upper().replace("-", "_")


def make_certs(out: Path, **env: str) -> subprocess.CompletedProcess:
    """Run deploy/tls/make-certs.sh ``out`` with extra environment."""
    return subprocess.run(
        ["sh", str(MAKE_CERTS), str(out)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )


def run_script(script: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run one of the deploy/ shell scripts with only ``env`` (plus PATH)."""
    return subprocess.run(
        ["sh", str(script)],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
    )
