"""The Kubernetes manifests and the Prometheus scrape configuration in deploy/.

Built-in kinds validate against the Kubernetes OpenAPI schemas that kubernetes-validate
ships (strict: unknown fields fail), with the network shut off to prove it needs none.
The custom resources (Multus' NetworkAttachmentDefinition, the Prometheus Operator's
ServiceMonitor) have no schema there: their metadata validates against ObjectMeta, and
structural tests check the fields they use and that every name one object gives another
(labels, port names, network names, mount paths) really matches."""

from __future__ import annotations

import copy
import json
import re
import socket
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate import utils as kv_utils
from referencing import Registry, Resource

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
MANIFESTS = sorted(K8S.rglob("*.yaml"))
BUILTIN = {"Namespace", "ConfigMap", "DaemonSet", "Service"}
CUSTOM = {"NetworkAttachmentDefinition", "ServiceMonitor"}
# The oldest and newest Kubernetes the manifests are checked against.
VERSIONS = ("1.28", kv_utils.latest_version())


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _all() -> dict[tuple[str, str], dict]:
    """(relative path, kind/name) -> object, for every manifest."""
    out = {}
    for path in MANIFESTS:
        for doc in _docs(path):
            out[(str(path.relative_to(K8S)), f"{doc['kind']}/{doc['metadata']['name']}")] = doc
    return out


def _find(kind: str, where: str = "") -> list[dict]:
    return [d for (path, _), d in _all().items()
            if d["kind"] == kind and path.startswith(where)]


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("validation tried to use the network")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_every_manifest_is_a_known_kind():
    kinds = {d["kind"] for d in _all().values()}
    assert kinds <= BUILTIN | CUSTOM, kinds - BUILTIN - CUSTOM
    assert {"DaemonSet", "ConfigMap", "Service", "NetworkAttachmentDefinition",
            "ServiceMonitor"} <= kinds


@pytest.mark.parametrize("version", VERSIONS)
def test_builtin_kinds_validate_against_the_kubernetes_schemas_offline(version, no_network):
    checked = 0
    for (path, name), doc in _all().items():
        if doc["kind"] in BUILTIN:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except jsonschema.ValidationError as e:
                raise AssertionError(f"{path} {name} (Kubernetes {version}): {e.message} "
                                     f"at {'/'.join(map(str, e.absolute_path))}") from None
            checked += 1
    assert checked >= 5


def test_the_validator_rejects_what_kubernetes_would(no_network):
    """A misspelt field and a wrongly typed one in the DaemonSet both fail validation."""
    ds = _find("DaemonSet", "daemonset.yaml")[0]
    typo = copy.deepcopy(ds)
    typo["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    wrong = copy.deepcopy(ds)
    wrong["spec"]["template"]["spec"]["hostNetwork"] = "yes"
    for bad in (typo, wrong):
        with pytest.raises(jsonschema.ValidationError):
            kubernetes_validate.validate(bad, VERSIONS[-1], strict=True)


def test_custom_resources_have_valid_metadata_and_the_fields_their_crds_define(no_network):
    defs = kv_utils.schema_contents(
        f"kubernetes-json-schema/v{VERSIONS[-1]}-local-strict/_definitions.json", VERSIONS[-1])
    registry = Resource.from_contents(defs) @ Registry()
    object_meta = jsonschema.Draft202012Validator(
        {"$ref": f"{defs['$id']}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
        registry=registry)
    for doc in _find("NetworkAttachmentDefinition") + _find("ServiceMonitor"):
        object_meta.validate(doc["metadata"])
        with pytest.raises(jsonschema.ValidationError):  # the schema really applies
            object_meta.validate({**doc["metadata"], "labels": {"a": 1}})
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])
    for nad in _find("NetworkAttachmentDefinition"):
        assert nad["apiVersion"] == "k8s.cni.cncf.io/v1" and set(nad["spec"]) == {"config"}
        cni = json.loads(nad["spec"]["config"])  # a JSON string, as the CRD requires
        assert {"cniVersion", "type"} <= set(cni) and cni["type"] == "host-device"
        assert cni["device"]
    (sm,) = _find("ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(sm["spec"]) == {"selector", "namespaceSelector", "endpoints"}
    for endpoint in sm["spec"]["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "relabelings"}
        for key in ("interval", "scrapeTimeout"):
            assert re.fullmatch(r"[0-9]+(ms|s|m|h)", endpoint[key])
        for rule in endpoint["relabelings"]:
            assert set(rule) <= {"sourceLabels", "targetLabel", "regex", "action",
                                 "replacement"}


def _container(ds: dict) -> dict:
    (container,) = ds["spec"]["template"]["spec"]["containers"]
    return container


def _env(ds: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in _container(ds)["env"]}


@pytest.mark.parametrize("where", ["daemonset.yaml", "multus/"])
def test_daemonsets_wire_configmap_ports_probes_and_capabilities(where):
    (ds,) = _find("DaemonSet", where)
    pod = ds["spec"]["template"]
    assert ds["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    c = _container(ds)
    env = _env(ds)
    # The ConfigMap is mounted where PKTFLOW_NF and PKTFLOW_RULES point, and has both files.
    (cm,) = _find("ConfigMap")
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    nf_volume = next(n for n, v in volumes.items()
                     if v.get("configMap", {}).get("name") == cm["metadata"]["name"])
    for var, key in (("PKTFLOW_NF", "nf.py"), ("PKTFLOW_RULES", "rules.conf")):
        assert env[var] == f"{mounts[nf_volume]}/{key}" and key in cm["data"]
    # Probes and the scrape annotation name the port the NF serves statistics on.
    (port,) = c["ports"]
    stats_port = int(env["PKTFLOW_STATS"].rsplit(":", 1)[1])
    assert port["containerPort"] == stats_port
    assert env["PKTFLOW_STATS_PUBLIC"] == "1"  # a non-loopback address needs the flag
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = c[probe]["httpGet"]
        assert get["port"] == port["name"] and get["path"] in ("/metrics", "/stats")
    notes = pod["metadata"]["annotations"]
    assert notes["prometheus.io/scrape"] == "true"
    assert int(notes["prometheus.io/port"]) == stats_port
    # Capabilities instead of privileged mode.
    sc = c["securityContext"]
    assert sc["privileged"] is False and sc["capabilities"]["drop"] == ["ALL"]
    assert set(sc["capabilities"]["add"]) == {"NET_ADMIN", "NET_RAW", "BPF", "IPC_LOCK"}
    assert c["resources"]["requests"] == c["resources"]["limits"]  # Guaranteed QoS
    assert len(env["PKTFLOW_PORTS"].split()) == 2


def test_multus_networks_are_the_interfaces_the_ports_name():
    (ds,) = _find("DaemonSet", "multus/")
    nads = {n["metadata"]["name"] for n in _find("NetworkAttachmentDefinition")}
    wanted = ds["spec"]["template"]["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"]
    ifnames = []
    for item in wanted.split(","):
        name, _, ifname = item.strip().partition("@")
        assert name in nads
        ifnames.append(ifname)
    ports = [spec.split(":", 1)[1] for spec in _env(ds)["PKTFLOW_PORTS"].split()]
    assert ports == ifnames
    assert not ds["spec"]["template"]["spec"].get("hostNetwork")


def test_configmap_carries_the_nf_and_rules_of_deploy():
    (cm,) = _find("ConfigMap")
    assert cm["data"]["nf.py"] == (ROOT / "deploy" / "nf.py").read_text()
    assert cm["data"]["rules.conf"] == (ROOT / "deploy" / "rules.conf").read_text()


def test_service_and_servicemonitor_select_the_nf_pods_metrics_port():
    (ds,) = _find("DaemonSet", "daemonset.yaml")
    (svc,) = _find("Service")
    (sm,) = _find("ServiceMonitor")
    pod_labels = ds["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert svc["spec"]["clusterIP"] == "None"
    (svc_port,) = svc["spec"]["ports"]
    assert svc_port["targetPort"] == _container(ds)["ports"][0]["name"]
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"]["matchNames"] == [svc["metadata"]["namespace"]]
    assert [e["port"] for e in sm["spec"]["endpoints"]] == [svc_port["name"]]
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"


def test_prometheus_scrape_job_keeps_annotated_pods_and_targets_their_port():
    doc = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    job = next(j for j in doc["scrape_configs"] if j["job_name"] == "pktflow-nf")
    (sd,) = job["kubernetes_sd_configs"]
    (ns,) = _find("Namespace")
    assert sd["role"] == "pod" and sd["namespaces"]["names"] == [ns["metadata"]["name"]]
    rules = job["relabel_configs"]
    keep = next(r for r in rules if r.get("action") == "keep")
    assert keep["source_labels"] == ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"]
    # Prometheus anchors regexes; fullmatch does the same on the joined source labels.
    address = next(r for r in rules if r.get("target_label") == "__address__")
    for pod_ip in ("10.1.2.3", "10.1.2.3:80"):
        m = re.fullmatch(address["regex"], f"{pod_ip};9100")
        assert m and m.expand(address["replacement"].replace("$", "\\")) == "10.1.2.3:9100"
    for j in doc["scrape_configs"]:
        assert set(j) <= {"job_name", "kubernetes_sd_configs", "relabel_configs",
                          "static_configs", "metrics_path", "scrape_interval"}
