"""The Helm chart rendered by Helm's own engine (helm-python-sdk binds Helm's Go SDK;
no cluster is contacted) and every manifest validated against the Kubernetes OpenAPI
schemas (kubernetes-validate, strict: unknown fields are errors); then the trust model
checked on what Kubernetes would receive."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from deploy.deploy_support import CHART, DEPLOY, PROBE, directives, password_var
from rapp_intent.settings import RappSettings
from rapp_negotiation.settings import NegoLLMSettings, NegoSettings
from servicekit.acl import USERS, mosquitto_acl
from servicekit.mqtt import parse_broker_url
from sim_ric.settings import SimSettings
from xapp_composer.settings import XappSettings

helm = pytest.importorskip(
    "helm_python", reason="Helm is not installed (pip install helm-python-sdk: the dev extra)"
)
kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="pip install kubernetes-validate (the dev extra)"
)

KUBERNETES = ("1.29.0", "1.33.0")
"""Kubernetes versions the manifests must validate against (oldest supported, recent)."""

RELEASE, NAMESPACE = "lab", "ric"
NAME = f"{RELEASE}-lameta"
VALUES = {
    "broker": {
        "users": {
            "sim-ric": {"password": "0123456789abcdef0123456789abcdef"},
            "xapp-composer": {"existingSecret": "xapp-mqtt"},
            "observer": {"password": "fedcba9876543210fedcba9876543210"},
        }
    },
    "tls": {"brokerSecret": "tls-broker", "rappSecret": "tls-rapp", "xappSecret": "tls-xapp"},
    "policy": {"configMap": "policy-srl-general"},
}
SETTINGS = {"SIM_": SimSettings, "RAPP_": RappSettings, "XAPP_": XappSettings,
            "NEGO_LLM_": NegoLLMSettings, "NEGO_": NegoSettings}  # fmt: skip
NEGOTIATION = {"negotiation": {"enabled": True},
               "broker": {"users": {"rapp-negotiation": {"password": "2" * 32}}}}  # fmt: skip


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def render(extra: dict | None = None) -> list[dict]:
    """Every manifest of an install of the chart with VALUES (and ``extra``)."""
    chart = helm.Chart.load(str(CHART))
    out = chart.render(_merge(VALUES, extra or {}), name=RELEASE, namespace=NAMESPACE)
    docs = []
    for text in out.values():
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def render_error(extra: dict) -> str:
    with pytest.raises(helm.HelmError) as err:
        render(extra)
    return str(err.value)


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def workloads(docs: list[dict]) -> dict[str, dict]:
    """Component name -> its pod spec."""
    out = {}
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet"):
            labels = d["spec"]["template"]["metadata"]["labels"]
            out[labels["app.kubernetes.io/name"]] = d["spec"]["template"]["spec"]
    return out


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    return render()


@pytest.mark.parametrize("version", KUBERNETES)
def test_every_manifest_validates_against_the_kubernetes_schemas(docs, version) -> None:
    assert len(docs) >= 15
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_rejects_what_kubernetes_would(docs) -> None:
    deployment = copy.deepcopy(next(d for d in docs if d["kind"] == "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["evn"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES[-1], strict=True)
    policy = copy.deepcopy(next(d for d in docs if d["kind"] == "NetworkPolicy"))
    policy["spec"]["ingress"][0]["ports"][0]["port"] = {"number": 8883}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(policy, KUBERNETES[-1], strict=True)


def test_helm_lint_finds_no_error() -> None:
    report = helm.lint(str(CHART), VALUES, strict=True, namespace=NAMESPACE)
    assert report["errors"] == []
    assert all(m["severity"] < 2 for m in report["messages"]), report["messages"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"broker": {"users": {"xapp-composer": {"existingSecret": ""}}}},
         "broker user xapp-composer needs a password"),
        ({"broker": {"users": {"sim-ric": {"password": ""}}}}, "broker user sim-ric"),
        ({"broker": {"users": {"observer": {"password": "not url safe!0123456"}}}},
         "broker.users.observer.password: at least 16 characters of A-Z"),
        ({"broker": {"users": {"operator": {"password": "short"}}}},
         "broker.users.operator.password"),
        ({"tls": {"rappSecret": ""}}, "tls.rappSecret"),
        ({"tls": {"xappSecret": ""}}, "tls.xappSecret"),
        ({"tls": {"brokerSecret": ""}}, "tls.brokerSecret"),
        ({"policy": {"configMap": ""}}, "policy.configMap"),
        ({"broker": {"port": 1883}}, "broker.port: the bundled Mosquitto listens on 8883"),
        ({"mosquitto": {"enabled": False}, "broker": {"host": "mqtt.example"},
          "tls": {"caSecret": "ca"}}, "networkPolicy.externalBroker"),
    ],
)  # fmt: skip
def test_an_install_without_its_secrets_fails_saying_which(extra, message) -> None:
    assert message in render_error(extra)


def test_the_broker_gets_the_committed_acl_and_one_password_per_user(docs) -> None:
    cm = by_kind(docs, "ConfigMap")[f"{NAME}-mosquitto"]["data"]
    assert cm["acl"] + "\n" == mosquitto_acl()
    assert cm["mosquitto.conf"] + "\n" == (DEPLOY / "mosquitto/mosquitto.conf").read_text()
    assert cm["init.sh"] + "\n" == (DEPLOY / "mosquitto/init.sh").read_text()
    pod = workloads(docs)["mosquitto"]
    init = env_of(pod["initContainers"][0])
    assert set(init) == {"ACL_SRC", "REQUIRED_USERS"} | {password_var(u) for u in USERS}
    assert init["REQUIRED_USERS"]["value"].split() == ["xapp-composer", "sim-ric"]
    refs = {u: init[password_var(u)]["valueFrom"]["secretKeyRef"] for u in USERS}
    assert refs["xapp-composer"] == {"name": "xapp-mqtt", "key": "password", "optional": False}
    assert refs["sim-ric"] == {"name": f"{NAME}-mqtt-sim-ric", "key": "password",
                               "optional": False}  # fmt: skip
    # Users without a password can be enabled later by making their Secret.
    assert refs["operator"] == {"name": f"{NAME}-mqtt-operator", "key": "password",
                                "optional": True}  # fmt: skip
    secrets = by_kind(docs, "Secret")
    assert set(secrets) == {f"{NAME}-mqtt-sim-ric", f"{NAME}-mqtt-observer"}
    assert secrets[f"{NAME}-mqtt-observer"]["stringData"] == {
        "password": VALUES["broker"]["users"]["observer"]["password"]}  # fmt: skip


def test_the_broker_is_tls_only_from_its_certificate_secret(docs) -> None:
    pod = workloads(docs)["mosquitto"]
    [container] = pod["containers"]
    assert [p["containerPort"] for p in container["ports"]] == [8883]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/mosquitto/tls"]]["secret"]["secretName"] == "tls-broker"
    assert pod["securityContext"]["runAsUser"] == 1883 and pod["securityContext"]["runAsNonRoot"]
    service = by_kind(docs, "Service")[f"{NAME}-mosquitto"]
    assert [p["port"] for p in service["spec"]["ports"]] == [8883]


def test_components_use_their_own_identity_and_settings_they_have(docs) -> None:
    pods = workloads(docs)
    users = {"sim-ric": "sim-ric", "xapp-composer": "xapp-composer"}
    unknown = []
    for component, user in users.items():
        env = env_of(pods[component]["containers"][0])
        prefix = "SIM_" if component == "sim-ric" else "XAPP_"
        url = parse_broker_url(env[f"{prefix}BROKER"]["value"].replace("$(MQTT_PASSWORD)", "p"))
        assert (url.scheme, url.host, url.port, url.username) == (
            "mqtts", f"{NAME}-mosquitto", 8883, user)  # fmt: skip
        secret = env["MQTT_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"]
        assert secret == ("xapp-mqtt" if user == "xapp-composer" else f"{NAME}-mqtt-{user}")
    for component, pod in pods.items():
        for var in env_of(pod["containers"][0]):
            prefix = next((p for p in SETTINGS if var.startswith(p)), None)
            if prefix and var[len(prefix) :].lower() not in SETTINGS[prefix].model_fields:
                unknown.append((component, var))
    assert not unknown, f"settings the services do not have: {unknown}"


def _mounted_secret(pod: dict, path: str) -> str:
    container = pod["containers"][0]
    volumes = {v["name"]: v for v in pod["volumes"]}
    hits = [m for m in container["volumeMounts"] if path.startswith(m["mountPath"] + "/")]
    assert hits, path
    volume = volumes[hits[0]["name"]]
    return volume["secret"]["secretName"] if "secret" in volume else volume["configMap"]["name"]


def test_mutual_tls_between_the_xapp_and_the_rapp(docs) -> None:
    pods = workloads(docs)
    xapp, rapp = env_of(pods["xapp-composer"]["containers"][0]), env_of(
        pods["rapp-intent"]["containers"][0])  # fmt: skip
    for var in ("XAPP_RAPP_TLS_CA", "XAPP_RAPP_TLS_CERT", "XAPP_RAPP_TLS_KEY"):
        assert _mounted_secret(pods["xapp-composer"], xapp[var]["value"]) == "tls-xapp"
    for var in ("RAPP_TLS_CERT", "RAPP_TLS_KEY", "RAPP_TLS_CLIENT_CA"):
        assert _mounted_secret(pods["rapp-intent"], rapp[var]["value"]) == "tls-rapp"
    assert rapp["RAPP_REPORT_IDENTITIES"]["value"] == "xapp-composer"
    # The xApp dials the rApp's Service by the name its probe checks in the certificate.
    service = f"{NAME}-rapp"
    assert service in by_kind(docs, "Service")
    assert xapp["XAPP_RAPP"]["value"] == f"{service}:50051"
    container = pods["rapp-intent"]["containers"][0]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        cmd = container[probe]["exec"]["command"]
        assert cmd[:2] == ["python", "/opt/lameta/probes/rapp_health.py"]
        assert cmd[cmd.index("--server-name") + 1] == service
    probes = by_kind(docs, "ConfigMap")[f"{NAME}-rapp-probes"]["data"]["rapp_health.py"]
    assert probes + "\n" == PROBE.read_text()


def test_the_xapp_verifies_its_policy_signature(docs) -> None:
    pod = workloads(docs)["xapp-composer"]
    env = env_of(pod["containers"][0])
    assert env["XAPP_POLICY"]["value"] == "/app/models/policy/srl-general.onnx"
    assert _mounted_secret(pod, env["XAPP_POLICY_PUBLIC_KEY"]["value"]) == "policy-srl-general"
    sig = [m for m in pod["containers"][0]["volumeMounts"]
           if m["mountPath"] == "/app/models/policy/srl-general.signature.json"]  # fmt: skip
    assert sig and sig[0]["subPath"] == "srl-general.signature.json"


def test_services_opt_in_to_every_interface_explicitly(docs) -> None:
    expected = {"sim-ric": ["SIM_METRICS_HOST"], "rapp-intent": ["RAPP_HOST",
                "RAPP_METRICS_HOST"], "xapp-composer": ["XAPP_HEALTH_HOST"]}  # fmt: skip
    pods = workloads(docs)
    for component, variables in expected.items():
        env = env_of(pods[component]["containers"][0])
        for var in variables:
            assert env[var]["value"] == "0.0.0.0", (component, var)


def _policies(docs) -> dict[str, dict]:
    return {d["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"]: d["spec"]
            for d in docs if d["kind"] == "NetworkPolicy"}  # fmt: skip


def _peers(rule_peers: list[dict]) -> list[str]:
    """Pod peers by component name; other peers as JSON."""
    out = []
    for peer in rule_peers:
        labels = peer.get("podSelector", {}).get("matchLabels", {})
        if set(peer) == {"podSelector"} and "app.kubernetes.io/name" in labels:
            assert labels["app.kubernetes.io/instance"] == RELEASE
            out.append(labels["app.kubernetes.io/name"])
        else:
            out.append(json.dumps(peer, sort_keys=True))
    return out


def _rules(rules: list[dict], key: str) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for rule in rules:
        for port in rule["ports"]:
            assert port["protocol"] in ("TCP", "UDP")
            out.setdefault(int(port["port"]), []).extend(_peers(rule[key]))
    return out


MONITORING = json.dumps({"namespaceSelector": {"matchLabels": {
    "kubernetes.io/metadata.name": "monitoring"}}}, sort_keys=True)  # fmt: skip
DNS = json.dumps({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name":
    "kube-system"}}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}, sort_keys=True)  # fmt: skip


def test_a_network_policy_per_component_allows_the_loop_and_nothing_else(docs) -> None:
    policies = _policies(docs)
    assert set(policies) == {"mosquitto", "rapp-intent", "xapp-composer", "sim-ric"}
    for spec in policies.values():
        assert spec["policyTypes"] == ["Ingress", "Egress"]  # default deny both ways
        for rule in spec["ingress"]:
            assert rule["from"], "an empty 'from' would admit everyone"
        for rule in spec["egress"]:
            assert rule["to"], "an empty 'to' would reach everywhere"
    ingress = {c: _rules(s["ingress"], "from") for c, s in policies.items()}
    egress = {c: _rules(s["egress"], "to") for c, s in policies.items()}
    assert ingress["mosquitto"] == {8883: ["xapp-composer", "sim-ric"]}
    assert ingress["rapp-intent"] == {50051: ["xapp-composer"], 9464: [MONITORING]}
    assert ingress["xapp-composer"] == {8080: [MONITORING]}
    assert ingress["sim-ric"] == {9465: [MONITORING]}
    assert egress["mosquitto"] == {}
    assert egress["rapp-intent"] == {53: [DNS, DNS]}  # UDP and TCP
    assert egress["xapp-composer"] == {8883: ["mosquitto"], 50051: ["rapp-intent"],
                                       53: [DNS, DNS]}  # fmt: skip
    assert egress["sim-ric"] == {8883: ["mosquitto"], 53: [DNS, DNS]}


def test_network_policies_follow_the_values() -> None:
    assert not [d for d in render({"networkPolicy": {"enabled": False}})
                if d["kind"] == "NetworkPolicy"]  # fmt: skip
    custom = render({
        "sim": {"enabled": False},
        "networkPolicy": {
            "monitoring": [{"namespaceSelector": {"matchLabels": {"team": "obs"}},
                            "podSelector": {"matchLabels": {"app": "prometheus"}}}],
            "brokerClients": [{"podSelector": {"matchLabels": {"app": "guard"}}}],
        },
    })  # fmt: skip
    policies = _policies(custom)
    assert set(policies) == {"mosquitto", "rapp-intent", "xapp-composer"}
    assert _rules(policies["mosquitto"]["ingress"], "from") == {
        8883: ["xapp-composer", json.dumps({"podSelector": {"matchLabels": {"app": "guard"}}})]
    }
    monitoring = policies["xapp-composer"]["ingress"][0]["from"]
    assert monitoring == [{"namespaceSelector": {"matchLabels": {"team": "obs"}},
                           "podSelector": {"matchLabels": {"app": "prometheus"}}}]  # fmt: skip
    closed = _policies(render({"networkPolicy": {"monitoring": []}}))
    assert closed["xapp-composer"]["ingress"] == [] and closed["sim-ric"]["ingress"] == []
    assert _rules(closed["rapp-intent"]["ingress"], "from") == {50051: ["xapp-composer"]}
    assert "networkPolicy.dns" in render_error({"networkPolicy": {"dns": []}})
    external = render({
        "mosquitto": {"enabled": False},
        "broker": {"host": "mqtt.example", "port": 8884},
        "tls": {"caSecret": "corp-ca"},
        "networkPolicy": {"externalBroker": [{"ipBlock": {"cidr": "192.0.2.10/32"}}]},
    })  # fmt: skip
    policies = _policies(external)
    assert "mosquitto" not in policies and "mosquitto" not in workloads(external)
    assert _rules(policies["xapp-composer"]["egress"], "to")[8884] == [
        json.dumps({"ipBlock": {"cidr": "192.0.2.10/32"}})]  # fmt: skip
    xapp = env_of(workloads(external)["xapp-composer"]["containers"][0])
    assert parse_broker_url(xapp["XAPP_BROKER"]["value"]).host == "mqtt.example"
    assert _mounted_secret(workloads(external)["xapp-composer"],
                           xapp["XAPP_TLS_CA"]["value"]) == "corp-ca"  # fmt: skip


def test_a_new_password_restarts_whoever_reads_it() -> None:
    def checksums(docs):
        return {c: p for c, p in ((d["spec"]["template"]["metadata"]["labels"][
            "app.kubernetes.io/name"], d["spec"]["template"]["metadata"]["annotations"].get(
            "checksum/users")) for d in docs if d["kind"] in ("Deployment", "StatefulSet"))}  # fmt: skip

    before = checksums(render())
    after = checksums(render({"broker": {"users": {"sim-ric": {"password": "1" * 32}}}}))
    for component in ("mosquitto", "sim-ric", "xapp-composer"):
        assert before[component] and before[component] != after[component], component


def test_no_secret_has_a_default_in_the_values() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert all(not v["password"] and not v["existingSecret"]
               for v in values["broker"]["users"].values())  # fmt: skip
    assert not any(values["tls"].values()) and not values["policy"]["configMap"]
    # With every password in a Secret of the operator's, the chart makes none.
    docs = render({"broker": {"users": {"sim-ric": {"password": "",
                                                    "existingSecret": "sim-mqtt"},
                                        "observer": {"password": ""}}}})  # fmt: skip
    assert by_kind(docs, "Secret") == {}


def test_a_signature_of_the_shipped_policy_verifies_beside_the_images_files(tmp_path) -> None:
    """The chart mounts <name>.signature.json into the image's policy directory (the
    repository's models/policy): a signature made as TRUST.md says verifies there, and
    not once a file differs."""
    from lameta_stack.stack import SHIPPED_POLICY, Stack
    from servicekit.integrity import IntegrityError, load_public_key, verify_files

    signed, public, _ = Stack(tmp_path / "trust").signed_policy(SHIPPED_POLICY)
    document = json.loads((signed.parent / "srl-general.signature.json").read_text())
    shipped = sorted(p.name for p in SHIPPED_POLICY.parent.glob("srl-general.*"))
    verify_files(document, SHIPPED_POLICY.parent, shipped, load_public_key(public))
    tampered = tmp_path / "image-policy"
    tampered.mkdir()
    for name in shipped:
        (tampered / name).write_bytes((SHIPPED_POLICY.parent / name).read_bytes())
    (tampered / "srl-general.card.json").write_text("{}")
    with pytest.raises(IntegrityError, match="changed after signing"):
        verify_files(document, tampered, shipped, load_public_key(public))


@pytest.fixture(scope="module")
def negotiation_docs() -> list[dict]:
    return render(NEGOTIATION)


@pytest.mark.parametrize("version", KUBERNETES)
def test_the_negotiation_rapp_validates_against_the_kubernetes_schemas(negotiation_docs, version):
    assert "rapp-negotiation" in workloads(negotiation_docs)
    for doc in negotiation_docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_negotiation_rapp_is_opt_in(docs) -> None:
    assert "rapp-negotiation" not in workloads(docs)
    assert "rapp-negotiation" not in _policies(docs)
    # Enabled, its broker user must have a password.
    message = render_error({"negotiation": {"enabled": True}})
    assert "broker user rapp-negotiation needs a password" in message


def test_the_negotiation_rapp_logs_in_as_itself_over_tls_and_binds_explicitly(
    negotiation_docs,
) -> None:
    pod = workloads(negotiation_docs)["rapp-negotiation"]
    env = env_of(pod["containers"][0])
    url = parse_broker_url(env["NEGO_BROKER"]["value"].replace("$(MQTT_PASSWORD)", "p"))
    assert (url.scheme, url.host, url.port, url.username) == (
        "mqtts", f"{NAME}-mosquitto", 8883, "rapp-negotiation")  # fmt: skip
    assert env["MQTT_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == (
        f"{NAME}-mqtt-rapp-negotiation")  # fmt: skip
    assert _mounted_secret(pod, env["NEGO_TLS_CA"]["value"]) == "tls-broker"
    assert env["NEGO_HEALTH_HOST"]["value"] == "0.0.0.0"
    assert (env["NEGO_DESIGN"]["value"], env["NEGO_LLM"]["value"]) == ("soft", "local")
    for var in env:
        prefix = next((p for p in SETTINGS if var.startswith(p)), None)
        assert prefix is None or var[len(prefix) :].lower() in SETTINGS[prefix].model_fields
    port = int(env["NEGO_HEALTH_PORT"]["value"])
    assert pod["containers"][0]["ports"] == [{"name": "http", "containerPort": port}]
    broker = env_of(workloads(negotiation_docs)["mosquitto"]["initContainers"][0])
    assert "rapp-negotiation" in broker["REQUIRED_USERS"]["value"].split()
    policies = _policies(negotiation_docs)
    assert _rules(policies["mosquitto"]["ingress"], "from") == {
        8883: ["xapp-composer", "sim-ric", "rapp-negotiation"]}  # fmt: skip
    assert _rules(policies["rapp-negotiation"]["ingress"], "from") == {port: [MONITORING]}
    assert _rules(policies["rapp-negotiation"]["egress"], "to") == {
        8883: ["mosquitto"], 53: [DNS, DNS]}  # fmt: skip


def test_a_new_negotiation_password_restarts_it(negotiation_docs) -> None:
    def checksum(docs):
        [d] = [d for d in docs if d["metadata"]["name"] == f"{NAME}-negotiation"
               and d["kind"] == "Deployment"]  # fmt: skip
        return d["spec"]["template"]["metadata"]["annotations"]["checksum/users"]

    new = {"broker": {"users": {"rapp-negotiation": {"password": "3" * 32}}}}
    assert checksum(negotiation_docs) != checksum(render(_merge(NEGOTIATION, new)))


def test_the_negotiation_rapp_reaches_an_openai_endpoint_only_where_listed() -> None:
    openai = _merge(NEGOTIATION, {"negotiation": {"llm": "openai", "openai": {
        "baseUrl": "https://llm.example/v1", "model": "big", "apiKeySecret": "llm-key"}}})  # fmt: skip
    assert "networkPolicy.llmEndpoint" in render_error(openai)
    endpoint = {"to": [{"ipBlock": {"cidr": "198.51.100.7/32"}}],
                "ports": [{"protocol": "TCP", "port": 443}]}  # fmt: skip
    docs = render(_merge(openai, {"networkPolicy": {"llmEndpoint": [endpoint]}}))
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES[-1], strict=True)
    env = env_of(workloads(docs)["rapp-negotiation"]["containers"][0])
    assert env["NEGO_LLM_BASE_URL"]["value"] == "https://llm.example/v1"
    assert env["NEGO_LLM_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "llm-key",
                                                                   "key": "api-key"}  # fmt: skip
    egress = _rules(_policies(docs)["rapp-negotiation"]["egress"], "to")
    assert egress[443] == [json.dumps({"ipBlock": {"cidr": "198.51.100.7/32"}})]
    no_url = {"negotiation": {"llm": "openai"}, "networkPolicy": {"llmEndpoint": [endpoint]}}
    assert "negotiation.openai.baseUrl" in render_error(_merge(NEGOTIATION, no_url))
    assert "negotiation.design" in render_error(_merge(NEGOTIATION, {"negotiation": {
        "design": "firm"}}))  # fmt: skip


def test_one_xapp_keeps_its_persistent_session(docs) -> None:
    deployment = by_kind(docs, "Deployment")[f"{NAME}-xapp"]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    env = env_of(workloads(docs)["xapp-composer"]["containers"][0])
    assert "XAPP_SHARE_GROUP" not in env and "XAPP_MQTT_PERSISTENT_SESSION" not in env
    assert "SIM_REANNOUNCE_AFTER" not in env_of(workloads(docs)["sim-ric"]["containers"][0])
    assert not by_kind(docs, "HorizontalPodAutoscaler")


@pytest.mark.parametrize(
    "xapp", [{"replicas": 3}, {"autoscaling": {"enabled": True, "maxReplicas": 5}}]
)
def test_xapp_replicas_share_the_requests(xapp) -> None:
    docs = render({"xapp": xapp})
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES[-1], strict=True)
    deployment = by_kind(docs, "Deployment")[f"{NAME}-xapp"]
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    env = env_of(workloads(docs)["xapp-composer"]["containers"][0])
    assert env["XAPP_SHARE_GROUP"]["value"] == "xapp-composer"
    assert env["XAPP_MQTT_CLIENT_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["XAPP_MQTT_PERSISTENT_SESSION"]["value"] == "false"
    settings = XappSettings(
        _env_file=None,
        share_group=env["XAPP_SHARE_GROUP"]["value"],
        mqtt_client_id="lab-lameta-xapp-7d9f-abcde",
        mqtt_persistent_session=env["XAPP_MQTT_PERSISTENT_SESSION"]["value"],
    )
    assert settings.share_group == "xapp-composer"
    sim_env = env_of(workloads(docs)["sim-ric"]["containers"][0])
    assert float(sim_env["SIM_REANNOUNCE_AFTER"]["value"]) > 0
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    if "autoscaling" in xapp:
        assert "replicas" not in deployment["spec"]  # the autoscaler owns the count
        hpa = hpas[f"{NAME}-xapp"]["spec"]
        assert hpa["scaleTargetRef"] == {
            "apiVersion": "apps/v1", "kind": "Deployment", "name": f"{NAME}-xapp"}  # fmt: skip
        assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 5)
        assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    else:
        assert deployment["spec"]["replicas"] == 3 and not hpas


GUARD = {"guard": {"enabled": True},
         "broker": {"users": {"xapp-guard": {"password": "4" * 32}}}}  # fmt: skip


@pytest.fixture(scope="module")
def guard_docs() -> list[dict]:
    return render(GUARD)


def _containers(pod: dict) -> dict[str, dict]:
    return {c["name"]: c for c in pod["containers"]}


def _mount_of(pod: dict, container: dict, path: str) -> tuple[dict, dict]:
    """The mount of ``container`` holding ``path`` and its volume."""
    hits = [m for m in container["volumeMounts"]
            if path == m["mountPath"] or path.startswith(m["mountPath"] + "/")]  # fmt: skip
    assert hits, (container["name"], path)
    mount = max(hits, key=lambda m: len(m["mountPath"]))
    return mount, {v["name"]: v for v in pod["volumes"]}[mount["name"]]


@pytest.mark.parametrize("version", KUBERNETES)
def test_the_guard_validates_against_the_kubernetes_schemas(guard_docs, version) -> None:
    assert "xapp-guard" in _containers(workloads(guard_docs)["mosquitto"])
    for doc in guard_docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_helm_lint_finds_no_error_with_the_guard() -> None:
    report = helm.lint(str(CHART), _merge(VALUES, GUARD), strict=True, namespace=NAMESPACE)
    assert report["errors"] == []
    assert all(m["severity"] < 2 for m in report["messages"]), report["messages"]


def test_without_the_guard_the_broker_pod_has_none_of_it(docs) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["guard"]["enabled"] is False
    pod = workloads(docs)["mosquitto"]
    assert list(_containers(pod)) == ["mosquitto"]
    broker = _containers(pod)["mosquitto"]
    assert "args" not in broker and "command" not in broker  # the image's mosquitto.conf
    assert {m["mountPath"] for m in broker["volumeMounts"]} == {
        "/mosquitto/config/mosquitto.conf", "/mosquitto/auth", "/mosquitto/tls",
        "/mosquitto/data"}  # fmt: skip
    assert {v["name"] for v in pod["volumes"]} == {"config", "init", "auth", "tls"}
    assert "hostAliases" not in pod
    cm = by_kind(docs, "ConfigMap")[f"{NAME}-mosquitto"]["data"]
    assert set(cm) == {"mosquitto.conf", "acl", "init.sh"}
    conf = dict(directives(cm["mosquitto.conf"]))
    assert "log_type all" not in cm["mosquitto.conf"] and conf["log_dest"] == "stdout"
    assert "xapp-guard" not in env_of(pod["initContainers"][0])["REQUIRED_USERS"]["value"]
    images = [c["image"] for p in workloads(docs).values() for c in p["containers"]]
    assert not [i for i in images if "xapp-guard" in i]


def test_an_install_with_the_guard_needs_its_password_and_the_bundled_broker() -> None:
    message = render_error({"guard": {"enabled": True}})
    assert "broker user xapp-guard needs a password" in message
    external = _merge(GUARD, {"mosquitto": {"enabled": False}, "broker": {"host": "mqtt.example"},
                              "tls": {"caSecret": "ca"},
                              "networkPolicy": {"externalBroker": [{"ipBlock": {
                                  "cidr": "192.0.2.10/32"}}]}})  # fmt: skip
    assert "guard.enabled: the guard runs in the bundled broker's pod" in render_error(external)


def test_the_guard_is_a_sidecar_reading_the_log_the_broker_writes(guard_docs) -> None:
    """The broker runs guard.conf, which writes the packet log (log_type all) into the
    emptyDir the guard mounts read-only at the path it reads, and includes the shipped
    mosquitto.conf from where that is mounted."""
    from xapp_guard.sensor import MOSQUITTO_LOG_LINES

    pod = workloads(guard_docs)["mosquitto"]
    containers = _containers(pod)
    assert list(containers) == ["mosquitto", "log-rotate", "xapp-guard"]
    broker, rotate, guard = (
        containers["mosquitto"],
        containers["log-rotate"],
        containers["xapp-guard"],
    )
    cm = by_kind(guard_docs, "ConfigMap")[f"{NAME}-mosquitto"]["data"]
    assert cm["guard.conf"] + "\n" == (DEPLOY / "mosquitto/guard.conf").read_text()
    assert cm["log-rotate.sh"] + "\n" == (DEPLOY / "mosquitto/log-rotate.sh").read_text()
    # The shipped configuration, unchanged (set_tcp_nodelay and the rest).
    assert cm["mosquitto.conf"] + "\n" == (DEPLOY / "mosquitto/mosquitto.conf").read_text()
    assert dict(directives(cm["mosquitto.conf"]))["set_tcp_nodelay"] == "true"

    # The broker's main file is guard.conf, from the ConfigMap.
    assert broker["args"][0].endswith("mosquitto") and broker["args"][1] == "-c"
    main = broker["args"][2]
    mount, volume = _mount_of(pod, broker, main)
    assert volume["configMap"]["name"] == f"{NAME}-mosquitto"
    assert [i["key"] for i in volume["configMap"]["items"]] == [mount["subPath"]] == ["guard.conf"]
    conf = directives(cm["guard.conf"])
    assert {f"{k} {v}" for k, v in conf} >= set(MOSQUITTO_LOG_LINES)
    # It includes the directory of the shipped mosquitto.conf, which must not hold it.
    [include] = [v for k, v in conf if k == "include_dir"]
    base, base_volume = _mount_of(pod, broker, f"{include}/mosquitto.conf")
    assert base["subPath"] == "mosquitto.conf" and base_volume["name"] == "config"
    assert not main.startswith(include + "/")

    # The log file: written by the broker into an emptyDir, read there by the guard.
    [log_file] = [v.split(" ", 1)[1] for k, v in conf if k == "log_dest" and v.startswith("file ")]
    broker_mount, log_volume = _mount_of(pod, broker, log_file)
    assert "emptyDir" in log_volume and not broker_mount.get("readOnly")
    guard_env = env_of(guard)
    guard_log = guard_env["GUARD_BROKER_LOG"]["value"]
    guard_mount, guard_volume = _mount_of(pod, guard, guard_log)
    assert guard_volume == log_volume
    assert guard_mount["readOnly"] is True
    relative = log_file[len(broker_mount["mountPath"]) :]
    assert guard_log[len(guard_mount["mountPath"]) :] == relative == "/mosquitto.log"
    # The rotation truncates that same file.
    rotate_env = env_of(rotate)
    rotate_mount, rotate_volume = _mount_of(pod, rotate, rotate_env["LOG_FILE"]["value"])
    assert rotate_volume == log_volume and not rotate_mount.get("readOnly")
    assert rotate_env["LOG_FILE"]["value"][len(rotate_mount["mountPath"]) :] == relative
    script = rotate["command"][-1]
    _, script_volume = _mount_of(pod, rotate, script)
    assert script_volume["configMap"]["items"] == [{"key": "log-rotate.sh",
                                                    "path": "log-rotate.sh"}]  # fmt: skip
    # The log is private to the broker's user: every container runs as the pod's.
    assert pod["securityContext"]["runAsUser"] == 1883
    for c in containers.values():
        assert "runAsUser" not in c["securityContext"], c["name"]


def test_the_guards_log_volume_is_sized_for_its_rotation(guard_docs) -> None:
    pod = workloads(guard_docs)["mosquitto"]
    rotate = env_of(_containers(pod)["log-rotate"])
    max_bytes = int(rotate["LOG_MAX_BYTES"]["value"])
    assert max_bytes == 64 * 2**20 and int(rotate["LOG_CHECK_SECONDS"]["value"]) == 10
    [volume] = [v for v in pod["volumes"] if v["name"] == "broker-log"]
    limit = volume["emptyDir"]["sizeLimit"]
    assert limit.endswith("Mi") and int(limit[:-2]) * 2**20 > 2 * max_bytes  # log and log.1
    small = render(_merge(GUARD, {"guard": {"brokerLog": {"maxMiB": 8, "checkSeconds": 5}}}))
    rotate = env_of(_containers(workloads(small)["mosquitto"])["log-rotate"])
    assert (rotate["LOG_MAX_BYTES"]["value"], rotate["LOG_CHECK_SECONDS"]["value"]) == (
        str(8 * 2**20), "5")  # fmt: skip


def test_the_guard_logs_in_as_itself_over_tls_on_the_pods_loopback(guard_docs) -> None:
    from xapp_guard.settings import GuardSettings

    pod = workloads(guard_docs)["mosquitto"]
    guard = _containers(pod)["xapp-guard"]
    env = env_of(guard)
    assert guard["image"].endswith("/xapp-guard:0.1.0") and guard["args"] == ["run"]
    url = parse_broker_url(env["GUARD_BROKER"]["value"].replace("$(MQTT_PASSWORD)", "p"))
    assert (url.scheme, url.host, url.port, url.username) == (
        "mqtts", f"{NAME}-mosquitto", 8883, "xapp-guard")  # fmt: skip
    # The certificate's name resolves to this pod: no DNS, no NetworkPolicy in between.
    assert pod["hostAliases"] == [{"ip": "127.0.0.1", "hostnames": [url.host]}]
    assert env["MQTT_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == f"{NAME}-mqtt-xapp-guard"
    mount, volume = _mount_of(pod, guard, env["GUARD_TLS_CA"]["value"])
    assert volume["secret"]["secretName"] == "tls-broker" and mount["readOnly"]
    assert volume["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]  # not the key
    assert "tls" not in {m["name"] for m in guard["volumeMounts"]}
    assert env["GUARD_NETWORK"]["value"] == "default"
    assert "GUARD_THRESHOLD" not in env  # the card's
    for var in env:
        assert var == "MQTT_PASSWORD" or var[len("GUARD_") :].lower() in GuardSettings.model_fields
    init = env_of(pod["initContainers"][0])
    assert "xapp-guard" in init["REQUIRED_USERS"]["value"].split()
    assert init[password_var("xapp-guard")]["valueFrom"]["secretKeyRef"]["optional"] is False
    threshold = render(_merge(GUARD, {"guard": {"threshold": 0.4}}))
    guard_env = env_of(_containers(workloads(threshold)["mosquitto"])["xapp-guard"])
    assert (
        GuardSettings(_env_file=None, threshold=guard_env["GUARD_THRESHOLD"]["value"]).threshold
        == 0.4
    )


def test_the_guards_metrics_port_is_probed_scraped_and_open_to_monitoring(guard_docs) -> None:
    from xapp_guard.settings import GuardSettings

    pod = workloads(guard_docs)["mosquitto"]
    guard = _containers(pod)["xapp-guard"]
    env = env_of(guard)
    port = int(env["GUARD_METRICS_PORT"]["value"])
    assert env["GUARD_METRICS_HOST"]["value"] == "0.0.0.0"
    settings = GuardSettings(_env_file=None, metrics_port=port)
    assert settings.metrics_port == port == 9467
    assert guard["ports"] == [{"name": "metrics", "containerPort": port}]
    assert guard["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    # The pod's readiness is the broker's alone.
    assert "readinessProbe" not in guard
    assert _containers(pod)["mosquitto"]["readinessProbe"]["tcpSocket"] == {"port": "mqtts"}
    for c in ("xapp-guard", "log-rotate"):
        resources = _containers(pod)[c]["resources"]
        assert resources["requests"] and resources["limits"], c
    [sts] = [d for d in guard_docs if d["kind"] == "StatefulSet"]
    annotations = sts["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["checksum/guard"]
    policies = _policies(guard_docs)
    assert _rules(policies["mosquitto"]["ingress"], "from") == {
        8883: ["xapp-composer", "sim-ric"], port: [MONITORING]}  # fmt: skip
    assert policies["mosquitto"]["egress"] == []
    closed = _policies(render(_merge(GUARD, {"networkPolicy": {"monitoring": []}})))
    assert _rules(closed["mosquitto"]["ingress"], "from") == {8883: ["xapp-composer", "sim-ric"]}


ACCESS_LOG = _merge(GUARD, {"guard": {"accessLog": {"enabled": True, "storageClassName": "nfs"}}})


@pytest.fixture(scope="module")
def access_docs() -> list[dict]:
    return render(ACCESS_LOG)


@pytest.mark.parametrize("version", KUBERNETES)
def test_the_access_log_validates_against_the_kubernetes_schemas(access_docs, version) -> None:
    for doc in access_docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_without_access_log_neither_side_names_one(guard_docs) -> None:
    pods = workloads(guard_docs)
    rapp, guard = pods["rapp-intent"], _containers(pods["mosquitto"])["xapp-guard"]
    assert list(_containers(rapp)) == ["rapp-intent"]
    assert "RAPP_ACCESS_LOG" not in env_of(rapp["containers"][0])
    assert "GUARD_ACCESS_LOG" not in env_of(guard)
    assert not [d for d in guard_docs if d["kind"] == "PersistentVolumeClaim"
                and "access-log" in d["metadata"]["name"]]  # fmt: skip


def test_the_guard_reads_the_access_log_the_rapp_writes(access_docs) -> None:
    """The rApp writes RAPP_ACCESS_LOG on a ReadWriteMany claim that the broker's pod mounts
    read-only at the path the guard reads (GUARD_ACCESS_LOG); a container of the rApp's
    pod truncates that same file with the broker log's rotation script."""
    pods = workloads(access_docs)
    rapp_pod, broker_pod = pods["rapp-intent"], pods["mosquitto"]
    rapp, rotate = (_containers(rapp_pod)[n] for n in ("rapp-intent", "access-log-rotate"))
    guard = _containers(broker_pod)["xapp-guard"]
    written = env_of(rapp)["RAPP_ACCESS_LOG"]["value"]
    read = env_of(guard)["GUARD_ACCESS_LOG"]["value"]
    rapp_mount, rapp_volume = _mount_of(rapp_pod, rapp, written)
    guard_mount, guard_volume = _mount_of(broker_pod, guard, read)
    claim = rapp_volume["persistentVolumeClaim"]["claimName"]
    assert guard_volume["persistentVolumeClaim"] == {"claimName": claim, "readOnly": True}
    assert guard_mount["readOnly"] is True and not rapp_mount.get("readOnly")
    relative = written[len(rapp_mount["mountPath"]) :]
    assert read[len(guard_mount["mountPath"]) :] == relative == "/rapp-access.jsonl"
    pvc = by_kind(access_docs, "PersistentVolumeClaim")[claim]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["spec"]["storageClassName"] == "nfs"
    # The rotation: the same file, the script the broker's log uses, as the rApp's user.
    rotate_env = env_of(rotate)
    rotate_mount, rotate_volume = _mount_of(rapp_pod, rotate, rotate_env["LOG_FILE"]["value"])
    assert rotate_volume == rapp_volume and not rotate_mount.get("readOnly")
    assert rotate_env["LOG_FILE"]["value"][len(rotate_mount["mountPath"]) :] == relative
    assert int(rotate_env["LOG_MAX_BYTES"]["value"]) == 64 * 2**20
    _, script = _mount_of(rapp_pod, rotate, rotate["command"][-1])
    assert script["configMap"]["name"] == f"{NAME}-mosquitto"
    assert script["configMap"]["items"] == [{"key": "log-rotate.sh", "path": "log-rotate.sh"}]
    assert "runAsUser" not in rotate["securityContext"]
    assert rapp_pod["securityContext"]["runAsUser"] == 10001
    # The settings exist on both sides.
    from xapp_guard.settings import GuardSettings

    assert "access_log" in RappSettings.model_fields and "access_log" in GuardSettings.model_fields


def test_an_existing_claim_is_used_as_is() -> None:
    docs = render(_merge(GUARD, {"guard": {"accessLog": {"enabled": True,
                                                         "existingClaim": "shared-logs"}}}))  # fmt: skip
    pods = workloads(docs)
    for pod in (pods["rapp-intent"], pods["mosquitto"]):
        [volume] = [v for v in pod["volumes"] if v["name"] == "access-log"]
        assert volume["persistentVolumeClaim"]["claimName"] == "shared-logs"
    assert "shared-logs" not in by_kind(docs, "PersistentVolumeClaim")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"guard": {"accessLog": {"enabled": True}}}, "ReadWriteMany claim"),
        (
            {
                "guard": {"accessLog": {"enabled": True, "existingClaim": "x"}},
                "rapp": {"replicas": 2},
            },
            "one access log",
        ),
    ],
)
def test_an_access_log_needs_shared_storage_and_one_rapp(extra, message) -> None:
    assert message in render_error(_merge(GUARD, extra))
