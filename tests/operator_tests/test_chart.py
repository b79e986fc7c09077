"""The Helm chart without a cluster: ``helm lint --strict`` and ``helm template`` over a matrix of
values, the schema rejecting bad values, CRDs and RBAC kept equal to their sources, restricted pod
security and standard labels on everything, the generated webhook certificate, the alert rules checked
by promtool, and the commands the chart runs accepted by the real entry points."""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from symbol_operator.cli import build_parser
from symbol_operator.webhook import serving
from symbol_service import cli as service_cli
from symbol_service.config import load_config
from tests.operator_tests.chart import CHART, NAMESPACE, RELEASE, find, helm, kinds, render, values_args
from tests.operator_tests.manifests import CRDS, EXAMPLES, REPO, example_documents

MONITORING = "monitoring.coreos.com/v1"
CERT_MANAGER = "cert-manager.io/v1"
BIN = Path(sys.executable).parent

MATRIX: dict[str, tuple[dict[str, Any], list[str]]] = {
    "defaults": ({}, []),
    "namespaced": ({"operator": {"watchNamespaces": ["team-a", "team-b"]}}, []),
    "no-webhook": ({"webhook": {"enabled": False}}, []),
    "namespace-opt-in-only": ({"webhook": {"podOptIn": False, "failurePolicy": "Fail", "replicas": 3}}, []),
    "cert-manager": ({}, [CERT_MANAGER]),
    "cert-manager-issuer": (
        {
            "webhook": {
                "tls": {"source": "certManager", "issuerRef": {"name": "corp", "kind": "ClusterIssuer"}}
            }
        },
        [CERT_MANAGER],
    ),
    "monitoring": (
        {
            "metrics": {
                "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
                "podMonitor": {"enabled": True},
                "prometheusRule": {"enabled": True},
                "dashboard": {"enabled": True},
            }
        },
        [MONITORING],
    ),
    "locked-down": (
        {
            "networkPolicy": {
                "enabled": True,
                "metricsNamespaceSelector": {"kubernetes.io/metadata.name": "mon"},
            },
            "image": {"digest": "sha256:" + "a" * 64},
            "imagePullSecrets": [{"name": "regcred"}],
            "priorityClassName": "system-cluster-critical",
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "commonLabels": {"team": "debugging"},
            "serviceAccount": {
                "annotations": {"iam.gke.io/gcp-service-account": "sym@p.iam.gserviceaccount.com"}
            },
        },
        [],
    ),
    "cluster-cache": (
        {"clusterCache": {"enabled": True, "storageClassName": "fast", "size": "10Gi", "workers": 2}},
        [],
    ),
    "publishing": (
        {
            "publishing": {
                "enabled": True,
                "store": {"id": "publish", "type": "s3", "bucket": "symbols", "region": "eu-west-1"},
                "credentialsSecret": {"name": "store-keys"},
                "tokens": {"secretName": "publish-tokens"},
                "publishSource": "publish",
                "publicUrl": "https://symbols.example.com",
                "limits": {"max_blob_size": "2GiB"},
                "ingress": {"enabled": True, "className": "nginx"},
            }
        },
        [],
    ),
    "publishing-namespaced": (
        {
            "operator": {"watchNamespaces": [NAMESPACE, "team-a"]},
            "publishing": {
                "enabled": True,
                "replicas": 3,
                "store": {"id": "publish", "type": "s3", "bucket": "b", "region": ["minio", "http://m:9000"]},
                "tokens": {"secretName": "publish-tokens", "key": "hashes.yaml"},
            },
        },
        [],
    ),
    "tuned-sidecar": (
        {
            "sidecar": {
                "cacheSize": "20Gi",
                "port": 18080,
                "cpuLimit": "1",
                "memoryLimit": "",
                "image": "m/p:1",
            }
        },
        [],
    ),
}


def rendered(name: str, tmp: Path) -> list[dict[str, Any]]:
    values, apis = MATRIX[name]
    return render(values, tmp, api_versions=apis)


def pods(documents: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(name, pod spec) of every workload and test pod."""
    found = []
    for doc in documents:
        if doc["kind"] == "Deployment":
            found.append((doc["metadata"]["name"], doc["spec"]["template"]["spec"]))
        elif doc["kind"] == "Pod":
            found.append((doc["metadata"]["name"], doc["spec"]))
    return found


def test_lint_strict_passes_for_every_values_set(tmp_path: Path) -> None:
    # helm lint has no --api-versions: the values sets that need an API render it unconditionally.
    for name, (values, _) in MATRIX.items():
        args = ["lint", "--strict", str(CHART), "--namespace", NAMESPACE, *values_args(values, tmp_path)]
        result = helm(*args, check=False)
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"


def test_defaults_render_the_operator_webhook_and_rbac(tmp_path: Path) -> None:
    documents = rendered("defaults", tmp_path)
    assert kinds(documents) == sorted(
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "Deployment",
            "Deployment",
            "MutatingWebhookConfiguration",
            "Pod",
            "PodDisruptionBudget",
            "Secret",
            "Service",
            "Service",
            "ServiceAccount",
        ]
    )
    operator = find(documents, "Deployment", f"{RELEASE}-symbol-operator")
    assert operator["spec"]["replicas"] == 1
    assert operator["spec"]["strategy"] == {"type": "Recreate"}
    args = operator["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--all-namespaces" in args
    webhook = find(documents, "Deployment", f"{RELEASE}-symbol-operator-webhook")
    assert webhook["spec"]["replicas"] == 2
    assert find(documents, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    test_pod = find(documents, "Pod")
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"


@pytest.mark.parametrize("name", list(MATRIX))
def test_every_pod_runs_restricted_with_probes_and_resources(name: str, tmp_path: Path) -> None:
    for pod_name, spec in pods(rendered(name, tmp_path)):
        security = spec["securityContext"]
        assert security["runAsNonRoot"] is True, pod_name
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}, pod_name
        for container in spec["containers"] + spec.get("initContainers", []):
            where = f"{pod_name}/{container['name']}"
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert container["resources"]["requests"], where
            if pod_name.endswith("-test"):
                continue
            assert "livenessProbe" in container, where


@pytest.mark.parametrize("name", list(MATRIX))
def test_every_resource_has_the_standard_labels(name: str, tmp_path: Path) -> None:
    for doc in rendered(name, tmp_path):
        labels = doc["metadata"].get("labels") or {}
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        for key in (
            "helm.sh/chart",
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by",
            "app.kubernetes.io/component",
            "app.kubernetes.io/part-of",
        ):
            assert key in labels, f"{where} lacks {key}"
        if doc["kind"] == "Deployment":
            selector = doc["spec"]["selector"]["matchLabels"]
            assert selector.items() <= doc["spec"]["template"]["metadata"]["labels"].items(), where
            assert "app.kubernetes.io/version" not in selector, where


def test_namespaced_mode_binds_the_cluster_role_in_each_namespace_only(tmp_path: Path) -> None:
    documents = rendered("namespaced", tmp_path)
    assert "ClusterRoleBinding" not in kinds(documents)
    bindings = [d for d in documents if d["kind"] == "RoleBinding"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    args = find(documents, "Deployment", f"{RELEASE}-symbol-operator")["spec"]["template"]["spec"][
        "containers"
    ][0]["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args and "--all-namespaces" not in args


def test_webhook_off_renders_no_webhook(tmp_path: Path) -> None:
    documents = rendered("no-webhook", tmp_path)
    assert "MutatingWebhookConfiguration" not in kinds(documents)
    assert [d["metadata"]["name"] for d in documents if d["kind"] == "Deployment"] == [
        f"{RELEASE}-symbol-operator"
    ]


def test_the_webhook_never_sees_the_control_planes_namespaces_or_its_own(tmp_path: Path) -> None:
    configuration = find(rendered("defaults", tmp_path), "MutatingWebhookConfiguration")
    assert [w["name"] for w in configuration["webhooks"]] == [
        "pod.inject.symbols.symbol-operator.dev",
        "namespace.inject.symbols.symbol-operator.dev",
    ]
    for webhook in configuration["webhooks"]:
        assert webhook["failurePolicy"] == "Ignore"
        assert webhook["sideEffects"] == "None"
        assert webhook["rules"] == [
            {
                "operations": ["CREATE"],
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["pods"],
                "scope": "Namespaced",
            }
        ]
        excluded = next(
            e
            for e in webhook["namespaceSelector"]["matchExpressions"]
            if e["key"] == "kubernetes.io/metadata.name"
        )
        assert excluded["operator"] == "NotIn"
        assert {"kube-system", "kube-public", "kube-node-lease", NAMESPACE} <= set(excluded["values"])
    only_namespaces = find(rendered("namespace-opt-in-only", tmp_path), "MutatingWebhookConfiguration")
    assert [w["clientConfig"]["service"]["path"] for w in only_namespaces["webhooks"]] == [
        "/inject/namespace"
    ]
    assert only_namespaces["webhooks"][0]["failurePolicy"] == "Fail"


def test_the_generated_certificate_is_trusted_by_the_ca_bundle_for_the_service_name(tmp_path: Path) -> None:
    documents = rendered("defaults", tmp_path)
    secret = find(documents, "Secret", f"{RELEASE}-symbol-operator-webhook-tls")
    bundle = find(documents, "MutatingWebhookConfiguration")["webhooks"][0]["clientConfig"]["caBundle"]
    assert secret["data"]["ca.crt"] == bundle
    ca = x509.load_pem_x509_certificate(base64.b64decode(bundle))
    serving_cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    serving_cert.verify_directly_issued_by(ca)
    names = serving_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    service = f"{RELEASE}-symbol-operator-webhook"
    assert f"{service}.{NAMESPACE}.svc" in names.get_values_for_type(x509.DNSName)


@pytest.mark.parametrize("name", ["cert-manager", "cert-manager-issuer"])
def test_with_cert_manager_the_certificate_and_ca_come_from_it(name: str, tmp_path: Path) -> None:
    documents = rendered(name, tmp_path)
    assert "Secret" not in kinds(documents)
    certificate = find(documents, "Certificate")
    configuration = find(documents, "MutatingWebhookConfiguration")
    assert configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
        f"{NAMESPACE}/{certificate['metadata']['name']}"
    )
    assert all("caBundle" not in w["clientConfig"] for w in configuration["webhooks"])
    assert ("Issuer" in kinds(documents)) is (name == "cert-manager")


def test_monitoring_objects_and_alert_rules_that_promtool_accepts(tmp_path: Path) -> None:
    documents = rendered("monitoring", tmp_path)
    assert {"ServiceMonitor", "PodMonitor", "PrometheusRule"} <= set(kinds(documents))
    assert find(documents, "ServiceMonitor")["metadata"]["labels"]["release"] == "prom"
    dashboard = next(
        d for d in documents if d["kind"] == "ConfigMap" and "grafana_dashboard" in d["metadata"]["labels"]
    )
    assert '"panels"' in dashboard["data"]["symbol-operator.json"]
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        yaml.safe_dump({"groups": find(documents, "PrometheusRule")["spec"]["groups"]}), encoding="utf-8"
    )
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is needed; run scripts/setup --test"
    check = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    alerts = {r["alert"] for g in find(documents, "PrometheusRule")["spec"]["groups"] for r in g["rules"]}
    assert len(alerts) == 5


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"webhook": {"failurePolicy": "Sometimes"}}, "failurePolicy"),
        ({"webhook": {"port": "https"}}, "port"),
        ({"sidecar": {"cacheSize": "lots"}}, "cacheSize"),
        ({"operator": {"watchNamespaces": ["Not_A_Namespace"]}}, "watchNamespaces"),
        ({"operator": {"baseConfig": {"sources": []}}}, "baseConfig"),
        ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
        ({"webhook": {"tls": {"source": "letsencrypt"}}}, "source"),
        ({"webhok": {"enabled": False}}, "webhok"),
        ({"publishing": {"replicas": 0}}, "replicas"),
        ({"publishing": {"store": {"type": "s3", "secret_key": "inline"}}}, "secret_key"),
        ({"publishing": {"store": {"type": "filesystem"}}}, "type"),
        ({"publishing": {"tokens": {"secretName": "Not A Secret"}}}, "secretName"),
        ({"publishing": {"ingress": {"enabled": "yes"}}}, "enabled"),
        ({"publishing": {"replica": 2}}, "replica"),
    ],
)
def test_values_violating_the_schema_fail(values: dict[str, Any], message: str, tmp_path: Path) -> None:
    args = ["template", RELEASE, str(CHART), *values_args(values, tmp_path)]
    result = helm(*args, check=False)
    assert result.returncode != 0
    assert "schema" in result.stderr and message in result.stderr, result.stderr


def test_the_cluster_cache_serves_the_release_namespaces_config_from_a_kept_claim(tmp_path: Path) -> None:
    documents = rendered("cluster-cache", tmp_path)
    claim = find(documents, "PersistentVolumeClaim")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert claim["spec"]["storageClassName"] == "fast"
    cache = find(documents, "Deployment", f"{RELEASE}-symbol-operator-cache")
    assert cache["spec"]["strategy"] == {"type": "Recreate"}
    spec = cache["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "--workers=2" in spec["containers"][0]["args"]
    assert volumes["config"]["secret"]["secretName"] == "symbol-proxy-config"
    assert volumes["cache"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    service = find(documents, "Service", f"{RELEASE}-symbol-operator-cache")
    assert service["spec"]["selector"].items() <= cache["spec"]["template"]["metadata"]["labels"].items()
    assert "PersistentVolumeClaim" not in kinds(rendered("defaults", tmp_path))


def test_the_charts_crds_are_the_repositorys_crds() -> None:
    chart_crds = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    source = {p.name: p.read_bytes() for p in CRDS.glob("*.yaml")}
    assert chart_crds == source


def example_rbac(kind: str, name: str) -> dict[str, Any]:
    return next(
        d
        for path, d in example_documents()
        if path == EXAMPLES / "rbac.yaml" and d["kind"] == kind and d["metadata"]["name"] == name
    )


def test_the_charts_rbac_is_the_examples_rbac(tmp_path: Path) -> None:
    example = example_rbac("ClusterRole", "symbol-operator")
    for values in ({}, {"operator": {"configSecret": "other-name"}}):
        role = find(render(values, tmp_path), "ClusterRole")
        expected = yaml.safe_load(
            yaml.safe_dump(example["rules"]).replace(
                "symbol-proxy-config", values.get("operator", {}).get("configSecret", "symbol-proxy-config")
            )
        )
        assert role["rules"] == expected


@pytest.mark.parametrize("name", ["publishing", "publishing-namespaced"])
def test_the_charts_publishing_rbac_is_the_examples_rbac(name: str, tmp_path: Path) -> None:
    """The example grants the operator's lifecycle and the service what the chart grants, no more;
    tests/operator_tests/k8s/test_chart_install.py runs both under exactly the chart's rules."""
    documents = rendered(name, tmp_path)
    lifecycle = find(documents, "ClusterRole", f"{RELEASE}-symbol-operator-lifecycle")
    assert lifecycle["rules"] == example_rbac("ClusterRole", "symbol-operator-lifecycle")["rules"]
    service = find(documents, "Role", f"{RELEASE}-symbol-operator-publishing")
    assert service["rules"] == example_rbac("Role", "symbol-service")["rules"]
    for kind, binding_name in (
        ("ClusterRoleBinding", "symbol-operator-lifecycle"),
        ("RoleBinding", "symbol-service"),
    ):
        binding = example_rbac(kind, binding_name)
        assert binding["roleRef"]["name"] == binding_name
        for subject in binding["subjects"]:
            example_rbac("ServiceAccount", subject["name"])  # each bound account is in the example


def test_the_commands_the_chart_runs_are_accepted_by_the_entry_points(tmp_path: Path) -> None:
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    for name in ("defaults", "namespaced", "tuned-sidecar", "publishing", "publishing-namespaced"):
        documents = rendered(name, tmp_path)
        for deployment in (d for d in documents if d["kind"] == "Deployment"):
            container = deployment["spec"]["template"]["spec"]["containers"][0]
            assert f'{container["command"][0]} = "' in pyproject
            if container["command"][0] == "symbol-service":
                served = service_cli.build_parser().parse_args(container["args"])
                assert (served.command, served.requests, served.namespace) == (
                    "serve",
                    "kubernetes",
                    NAMESPACE,
                )
                continue
            args = build_parser().parse_args(container["args"])
            if args.command == "run":
                assert (args.publish_config is not None) == name.startswith("publishing"), name
            if args.command == "webhook":
                settings = serving.settings_from_args(args)
                assert settings.image.startswith(("registry.example.com/symbol-operator", "m/p:1"))


def test_the_dockerfile_names_entry_points_that_exist_and_start() -> None:
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert "USER 10001" in dockerfile
    for command in ("symbol-proxy", "symbol-operator"):
        assert command in dockerfile and f'{command} = "' in pyproject
        executable = BIN / command
        result = subprocess.run([str(executable), "--help"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
    cmd = yaml.safe_load(next(line for line in dockerfile.splitlines() if line.startswith("CMD"))[4:])
    result = subprocess.run(
        [str(BIN / cmd[0]), *cmd[1:], "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_every_key_of_values_yaml_has_a_comment_above_it() -> None:
    lines = (CHART / "values.yaml").read_text(encoding="utf-8").splitlines()
    undocumented = []
    for number, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.startswith("- ") or ":" not in stripped:
            continue
        above = lines[number - 1].strip() if number else ""
        if not above.startswith("#"):
            undocumented.append(f"{number + 1}: {stripped}")
    assert undocumented == []


def config_files(documents: list[dict[str, Any]], deployment: dict[str, Any], tmp: Path) -> dict[str, Path]:
    """The ConfigMap files a Deployment mounts, written under tmp at their paths in the pod."""
    spec = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    files = {}
    for mount in spec["containers"][0]["volumeMounts"]:
        config_map = volumes[mount["name"]].get("configMap")
        if config_map is None:
            continue
        for key, text in find(documents, "ConfigMap", config_map["name"])["data"].items():
            path = tmp / mount["mountPath"].lstrip("/") / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            files[f"{mount['mountPath']}/{key}"] = path
    return files


@pytest.mark.parametrize("name", ["publishing", "publishing-namespaced"])
def test_publishing_deploys_the_service_and_gives_the_operator_its_config_and_rbac(
    name: str, tmp_path: Path
) -> None:
    values = MATRIX[name][0]["publishing"]
    documents = rendered(name, tmp_path)
    service_name = f"{RELEASE}-symbol-operator-publishing"
    service = find(documents, "Deployment", service_name)
    assert service["spec"]["replicas"] == values.get("replicas", 2)
    spec = service["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == service_name
    container = spec["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # The configuration the service and the operator read is one file, valid for the service, and
    # holds no secret: keys come from the named Secret, tokens from the mounted one.
    service_files = config_files(documents, service, tmp_path / "service")
    [config_path] = [p for k, p in service_files.items() if k.endswith("/service.yaml")]
    config = load_config(config_path)
    assert config.store.model_dump(include={"type", "bucket"}) == {
        "type": "s3",
        "bucket": values["store"]["bucket"],
    }
    assert not config.store.access_key.get_secret_value() and not config.store.secret_key.get_secret_value()
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    tokens = volumes["tokens"]["secret"]
    assert tokens["secretName"] == values["tokens"]["secretName"]
    assert f"{mounts['tokens']}/{tokens['items'][0]['path']}" == config.tokens_file
    assert "subPath" not in str(container["volumeMounts"])  # a rotated token must reach the pod
    credentials = values.get("credentialsSecret", {}).get("name")
    env = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in container.get("env", [])}
    assert env == (
        {"AWS_ACCESS_KEY_ID": credentials, "AWS_SECRET_ACCESS_KEY": credentials} if credentials else {}
    )

    operator = find(documents, "Deployment", f"{RELEASE}-symbol-operator")
    operator_container = operator["spec"]["template"]["spec"]["containers"][0]
    args = build_parser().parse_args(operator_container["args"])
    operator_files = config_files(documents, operator, tmp_path / "operator")
    assert load_config(operator_files[str(args.publish_config)]) == config
    assert args.publish_source == values.get("publishSource")
    assert operator_container.get("env", []) == container.get("env", [])

    # Garbage collection: a CronJob running `symbol-service gc` on the same configuration, one at a time.
    gc = find(documents, "CronJob", f"{service_name}-gc")
    assert gc["spec"]["concurrencyPolicy"] == "Forbid"
    gc_spec = gc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert gc_spec["serviceAccountName"] == service_name
    gc_container = gc_spec["containers"][0]
    gc_args = service_cli.build_parser().parse_args([*gc_container["command"][1:], *gc_container["args"]])
    assert gc_args.command == "gc" and gc_args.namespace == NAMESPACE
    assert (
        load_config(config_files(documents, gc["spec"]["jobTemplate"], tmp_path / "gc")[gc_args.config])
        == config
    )
    assert config.gc.grace_period == 24 * 3600
    assert gc_container.get("env", []) == container.get("env", [])

    port = find(documents, "Service", service_name)["spec"]["ports"][0]
    assert port["port"] == config.listen.port and port["targetPort"] == container["ports"][0]["name"]
    selector = find(documents, "Service", service_name)["spec"]["selector"]
    assert selector.items() <= service["spec"]["template"]["metadata"]["labels"].items()
    ingresses = [d for d in documents if d["kind"] == "Ingress"]
    assert len(ingresses) == int(values.get("ingress", {}).get("enabled", False))
    for ingress in ingresses:
        backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
        assert backend == {"name": service_name, "port": {"name": "http"}}

    # The service: SymbolRequests of its own namespace only.
    role = find(documents, "Role", service_name)
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [
        {
            "apiGroups": ["symbols.symbol-operator.dev"],
            "resources": ["symbolrequests"],
            "verbs": ["get", "list", "watch", "create", "patch", "delete"],
        },
        {
            "apiGroups": ["symbols.symbol-operator.dev"],
            "resources": ["symbolrequests/status"],
            "verbs": ["patch"],
        },
    ]
    binding = find(documents, "RoleBinding", service_name)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": service_name, "namespace": NAMESPACE}]
    assert find(documents, "ServiceAccount", service_name)
    # The operator: the lifecycle's rules, bound like its own role.
    lifecycle = find(documents, "ClusterRole", f"{RELEASE}-symbol-operator-lifecycle")
    granted = {(r["resources"][0], v) for r in lifecycle["rules"] for v in r["verbs"]}
    assert {("symbolrequests", v) for v in ("list", "watch", "patch", "delete")} <= granted
    assert {("symbolrequests/status", "patch"), ("symbolsources", "patch")} <= granted
    assert ("symbolrequests", "create") not in granted
    bindings = [
        d
        for d in documents
        if d["kind"] in ("RoleBinding", "ClusterRoleBinding")
        and d["roleRef"]["name"] == lifecycle["metadata"]["name"]
    ]
    watched = MATRIX[name][0].get("operator", {}).get("watchNamespaces")
    if watched:
        assert sorted(b["metadata"]["namespace"] for b in bindings) == sorted(watched)
    else:
        assert [b["kind"] for b in bindings] == ["ClusterRoleBinding"]


def test_publishing_off_renders_none_of_it(tmp_path: Path) -> None:
    documents = rendered("defaults", tmp_path)
    assert not [
        d for d in documents if "publishing" in d["metadata"]["name"] or "lifecycle" in d["metadata"]["name"]
    ]
    operator = find(documents, "Deployment", f"{RELEASE}-symbol-operator")
    assert (
        build_parser()
        .parse_args(operator["spec"]["template"]["spec"]["containers"][0]["args"])
        .publish_config
        is None
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"publishing": {"enabled": True, "store": {"type": "s3", "bucket": "b"}}}, "tokens.secretName"),
        ({"publishing": {"enabled": True, "tokens": {"secretName": "t"}}}, "publishing.store"),
        (
            {
                "operator": {"watchNamespaces": ["team-a"]},
                "publishing": {
                    "enabled": True,
                    "tokens": {"secretName": "t"},
                    "store": {"type": "s3", "bucket": "b"},
                },
            },
            "watchNamespaces",
        ),
    ],
)
def test_publishing_without_what_it_needs_fails_with_a_clear_message(
    values: dict[str, Any], message: str, tmp_path: Path
) -> None:
    result = helm(
        "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *values_args(values, tmp_path), check=False
    )
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
