"""The KubeRay RayJob of SRL training (deploy/ray/rayjob.yaml), checked statically: the
entrypoint is a valid ``xapp-composer train`` command on Ray with as many workers as the
worker pods, the pod templates and the volume claim validate against the Kubernetes
schemas, the image is a target of deploy/Dockerfile with Ray installed at the cluster's
version, and the checkpoint directory is on the mounted volume."""

from __future__ import annotations

import re
import shlex
from importlib import metadata
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from support.mqtt import ROOT

from xapp_composer.cli import build_parser

RAYJOB = ROOT / "deploy" / "ray" / "rayjob.yaml"
KUBERNETES = "1.33.0"
RAYJOB_SPEC = {"entrypoint", "shutdownAfterJobFinishes", "ttlSecondsAfterFinished",
               "activeDeadlineSeconds", "rayClusterSpec", "runtimeEnvYAML", "submitterPodTemplate",
               "suspend", "backoffLimit", "jobId", "metadata", "entrypointNumCpus"}  # fmt: skip
CLUSTER_SPEC = {"rayVersion", "headGroupSpec", "workerGroupSpecs", "enableInTreeAutoscaling"}


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    return list(yaml.safe_load_all(RAYJOB.read_text()))


def job(docs) -> dict:
    (found,) = [d for d in docs if d["kind"] == "RayJob"]
    return found


def templates(docs) -> list[dict]:
    cluster = job(docs)["spec"]["rayClusterSpec"]
    return [cluster["headGroupSpec"]["template"]] + [
        g["template"] for g in cluster["workerGroupSpecs"]
    ]


def test_the_rayjob_has_only_known_fields(docs) -> None:
    j = job(docs)
    assert j["apiVersion"] == "ray.io/v1"
    assert set(j["spec"]) <= RAYJOB_SPEC
    assert set(j["spec"]["rayClusterSpec"]) <= CLUSTER_SPEC


def test_the_entrypoint_is_a_train_command_with_one_worker_per_pod(docs) -> None:
    j = job(docs)
    argv = shlex.split(j["spec"]["entrypoint"])
    assert argv[:2] == ["xapp-composer", "train"]
    args = build_parser().parse_args(argv[1:])
    assert args.ray == "auto"
    cluster = j["spec"]["rayClusterSpec"]
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # no actor there
    slots = sum(
        g["replicas"] * int(g["rayStartParams"]["num-cpus"]) for g in cluster["workerGroupSpecs"]
    )
    assert args.workers == slots
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    mounts = [m["mountPath"] for m in head["volumeMounts"]]
    assert any(Path(args.out).is_relative_to(m) for m in mounts), (args.out, mounts)


def test_the_pod_templates_and_the_claim_validate(docs) -> None:
    for t in templates(docs):
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": t["spec"]}
        kubernetes_validate.validate(pod, KUBERNETES, strict=True)
    for d in docs:
        if d["kind"] != "RayJob":
            kubernetes_validate.validate(d, KUBERNETES, strict=True)
    claims = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    head = templates(docs)[0]["spec"]
    assert {v["persistentVolumeClaim"]["claimName"] for v in head["volumes"]} <= claims


def test_the_image_is_a_dockerfile_target_with_ray_at_the_cluster_version(docs) -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    images = {c["image"] for t in templates(docs) for c in t["spec"]["containers"]}
    assert images == {"lameta/srl-trainer:latest"}
    stage = dockerfile.split("AS srl-trainer\n", 1)[1].split("\nFROM ", 1)[0]
    assert "pip install '.[ray]'" in stage
    version = job(docs)["spec"]["rayClusterSpec"]["rayVersion"]
    pin = re.search(r'"ray(>=[^"]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    low, high = re.fullmatch(r">=([\d.]+),<(\d+)", pin).groups()
    major = int(version.split(".")[0])
    assert tuple(map(int, version.split("."))) >= tuple(map(int, low.split("."))) and major < int(
        high
    )
    installed = {d.metadata["Name"] for d in metadata.distributions()}
    if "ray" in installed:  # an optional extra
        assert metadata.version("ray") == version
