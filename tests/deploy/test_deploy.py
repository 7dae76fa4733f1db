"""deploy/: Dockerfile, Kubernetes manifests, Prometheus rules, Grafana dashboard.

Checked as far as this machine allows: manifests against the Kubernetes schemas
(kubernetes-validate), `kubectl kustomize`, `promtool check rules` and `promtool test
rules` (Debian's prometheus package), the dashboard JSON, and that every metric the rules
and the dashboard use is one the server exports.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
RULES = DEPLOY / "prometheus" / "maasrec-rules.yml"
DASHBOARD = DEPLOY / "grafana" / "maasrec-dashboard.json"


def manifests() -> list[dict]:
    docs = []
    for f in sorted(K8S.glob("*.yaml")):
        if f.name == "kustomization.yaml":
            continue
        docs.extend(d for d in yaml.safe_load_all(f.read_text()) if d)
    return docs


def by_kind(kind: str) -> dict:
    (doc,) = [d for d in manifests() if d["kind"] == kind]
    return doc


def test_manifests_load_and_match_the_kustomization():
    kinds = sorted(d["kind"] for d in manifests())
    assert kinds == ["Deployment", "HorizontalPodAutoscaler", "Namespace",
                     "PersistentVolumeClaim", "PodDisruptionBudget", "Service"]
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kust["resources"]) | {f for g in kust["configMapGenerator"] for f in g["files"]}
    on_disk = {f.name for f in K8S.iterdir()} - {"kustomization.yaml"}
    assert listed == on_disk


@pytest.mark.skipif(importlib.util.find_spec("kubernetes_validate") is None,
                    reason="kubernetes-validate is not installed (pip install kubernetes-validate)")
def test_manifests_pass_the_kubernetes_schemas():
    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    for doc in manifests():
        kubernetes_validate.validate(doc, version, strict=True)
    # the check can fail: a misspelt field is refused
    bad = json.loads(json.dumps(by_kind("Deployment")))
    bad["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, version, strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_renders():
    out = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    cm = [d for d in docs if d["kind"] == "ConfigMap"]
    assert len(cm) == 1 and "reloader.py" in cm[0]["data"]
    dep = next(d for d in docs if d["kind"] == "Deployment")
    vol = next(v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "reloader")
    assert vol["configMap"]["name"] == cm[0]["metadata"]["name"]  # the hashed name


def test_deployment_probes_volume_and_server_options():
    from maasrec.cli import build_parser

    spec = by_kind("Deployment")["spec"]["template"]["spec"]
    server = next(c for c in spec["containers"] if c["name"] == "server")
    assert server["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert server["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert server["resources"]["requests"]["memory"] and server["resources"]["limits"]["memory"]
    mounts = {m["name"]: m for m in server["volumeMounts"]}
    assert mounts["models"]["readOnly"] is True
    args = build_parser().parse_args(["serve", *server["args"]])
    assert args.model_root == "/models" and args.model_dir.startswith("/models/")
    assert args.workers == 1
    # the Dockerfile's default command parses too
    text = (DEPLOY / "Dockerfile").read_text()
    cmd = re.search(r'^CMD (\[.*?\])\s*$', text.replace("\\\n", ""), re.S | re.M).group(1)
    entry = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M).group(1))
    assert entry == ["maasrec", "serve"]
    assert build_parser().parse_args(["serve", *json.loads(cmd)]).host == "0.0.0.0"
    hpa = by_kind("HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"]["name"] == by_kind("Deployment")["metadata"]["name"]
    assert 1 <= hpa["minReplicas"] < hpa["maxReplicas"]


def test_probe_paths_are_served():
    pytest.importorskip("fastapi")
    from maasrec.models import Popularity
    from maasrec.serving import create_app
    from maasrec.testing import tiny_interactions

    app = create_app(Popularity().fit(tiny_interactions()))
    paths = {getattr(r, "path", None) for r in app.routes}
    assert {"/healthz", "/readyz", "/metrics", "/v1/admin/reload"} <= paths


def exported_metrics() -> set[str]:
    pytest.importorskip("prometheus_client")
    from maasrec.serving.metrics import ServingMetrics

    m = ServingMetrics()
    m.set_model("EASE", "m", "0", 1)
    names = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                "gauge": ("",)}
    for fam in m.registry.collect():  # the names as exposed, labelled children or not
        names.update(fam.name + s for s in suffixes[fam.type])
    return names | {"up"}


def promql_metrics(expr: str) -> set[str]:
    expr = re.sub(r'"[^"]*"', '""', expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    words = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", expr))
    keywords = {"sum", "by", "rate", "increase", "histogram_quantile", "time", "max", "count",
                "and", "le", "job", "instance", "endpoint", "error", "result", "__rate_interval"}
    return {w for w in words if w not in keywords and not w.startswith("maasrec:")
            and not re.fullmatch(r"\d+", w)}


def test_rules_and_dashboard_use_exported_metrics():
    exported = exported_metrics()
    rules = yaml.safe_load(RULES.read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dash = json.loads(DASHBOARD.read_text())
    exprs += [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = set().union(*(promql_metrics(e) for e in exprs))
    assert used and used <= exported, used - exported
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert {"MaasrecHighErrorRatio", "MaasrecHighLatencyP99", "MaasrecReloadFailures",
            "MaasrecModelTooOld"} <= alerts


def test_dashboard_json():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] and dash["panels"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        assert p["targets"] and all(t["expr"] for t in p["targets"])


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool is not installed (Debian: apt-get install prometheus)")
def test_promtool_checks_and_unit_tests_the_rules():
    r = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run(["promtool", "test", "rules", "maasrec-rules.test.yml"],
                       cwd=RULES.parent, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def test_reloader_reloads_only_when_the_model_changes(tmp_path):
    import importlib.machinery
    import types

    loader = importlib.machinery.SourceFileLoader("reloader", str(K8S / "reloader.py"))
    reloader = types.ModuleType("reloader")
    loader.exec_module(reloader)
    from maasrec.models import ItemKNN, Popularity
    from maasrec.testing import tiny_interactions

    class Server:  # stands in for maasrec.client.Client
        calls = 0

        def reload(self):
            self.calls += 1
            return {"model_version": self.calls + 1}

    server, model_dir = Server(), tmp_path / "current"
    assert reloader.check_once(server, str(model_dir), None) is None  # nothing yet
    X = tiny_interactions()
    Popularity().fit(X).save(model_dir)
    first = reloader.check_once(server, str(model_dir), None)
    assert first is not None and server.calls == 0  # what the server started with
    assert reloader.check_once(server, str(model_dir), first) == first and server.calls == 0
    ItemKNN(n_neighbors=2).fit(X).save(model_dir, overwrite=True)
    second = reloader.check_once(server, str(model_dir), first)
    assert second != first and server.calls == 1
