"""Fixtures of the deploy/ tests: the deployment's certificates (made once by
deploy/tls/make-certs.sh) and one URL-safe password per broker user."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import pytest

from deploy.deploy_support import make_certs
from servicekit.acl import USERS


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Path:
    """The certificates of a compose deployment (default names), made once."""
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    out = tmp_path_factory.mktemp("pki")
    done = make_certs(out)
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="session")
def passwords() -> dict[str, str]:
    """One password per broker user."""
    return {user: secrets.token_hex(16) for user in USERS}
