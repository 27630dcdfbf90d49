"""Helm, offline. Our chart (helm/nova-jobs) is linted and rendered by the real Helm v4 SDK
(the `helm-python-sdk` wheel). The official `dagster` chart cannot be fetched here, so
helm/dagster-values.yaml is checked against what chart 1.13 expects as far as it is known
offline: the value keys of its schema models (copied below), the instance config the chart
generates from them (validated by Dagster itself) and agreement with deploy/dagster.prod.yaml."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pytest
import yaml

helm = pytest.importorskip("helm_python")

CONTRACT_METRICS = {
    "job_runs_total", "job_duration_seconds", "job_last_success_timestamp", "job_health",
    "job_consecutive_failures", "job_items_processed", "job_dlq_messages_total",
}
JOBS = {"trending_1h", "trending_24h", "trending_7d", "suggested_users", "cache_warmer"}
# Settings that hold credentials or hosts with credentials: only ever from a Secret.
SECRET_SETTINGS = {"CLICKHOUSE_URL", "REDIS_URL", "KAFKA_BROKERS", "KAFKA_SASL_USERNAME",
                   "KAFKA_SASL_PASSWORD", "DAGSTER_PG_PASSWORD"}

# Keys the official chart 1.13 accepts (its pydantic schema models forbid extras here).
CHART_KEYS = {
    "customRunCoordinator": {"module", "class", "config"},
    "pools": {"defaultLimit", "granularity", "opGranularityRunBuffer"},
    "runRetries": {"enabled", "maxRetries", "retryOnAssetOrOpFailure"},
    "k8sRunLauncher": {"image", "imagePullPolicy", "jobNamespace", "loadInclusterConfig", "kubeconfigFile",
                       "envConfigMaps", "envSecrets", "envVars", "volumeMounts", "volumes", "labels",
                       "failPodOnRunFailure", "resources", "schedulerName", "securityContext", "runK8sConfig"},
    "runK8sConfig": {"containerConfig", "podSpecConfig", "podTemplateSpecMetadata", "jobSpecConfig", "jobMetadata"},
    "userDeployment": {"name", "image", "dagsterApiGrpcArgs", "codeServerArgs", "includeConfigInLaunchedRuns",
                       "deploymentNamespace", "port", "replicaCount", "env", "envConfigMaps", "envSecrets",
                       "annotations", "nodeSelector", "affinity", "tolerations", "podSecurityContext",
                       "securityContext", "resources", "livenessProbe", "readinessProbe", "startupProbe",
                       "labels", "volumeMounts", "volumes", "schedulerName", "initContainers",
                       "sidecarContainers", "deploymentStrategy"},
    "image": {"repository", "tag", "pullPolicy"},
    "postgresql": {"image", "enabled", "postgresqlHost", "postgresqlUsername", "postgresqlPassword",
                   "postgresqlDatabase", "postgresqlParams", "postgresqlScheme", "service"},
}


@pytest.fixture
def values(project_root: Path) -> dict:
    return yaml.safe_load((project_root / "helm" / "dagster-values.yaml").read_text())


@pytest.fixture
def prod_instance(project_root: Path) -> dict:
    return yaml.safe_load((project_root / "deploy" / "dagster.prod.yaml").read_text())


def render(project_root: Path, overrides: dict | None = None) -> dict[str, list[dict]]:
    with helm.Chart.load(str(project_root / "helm" / "nova-jobs")) as chart:
        manifests = chart.render(overrides or {}, name="nova-jobs", namespace="nova-jobs")
    return {
        Path(path).name: [doc for doc in yaml.safe_load_all(text) if doc]
        for path, text in manifests.items()
    }


def by_kind(rendered: dict[str, list[dict]]) -> dict[str, dict]:
    return {doc["kind"]: doc for docs in rendered.values() for doc in docs}


def walk(node, path=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}[{index}]")
    else:
        yield path, node


def test_our_chart_lints_clean(project_root):
    report = helm.lint(str(project_root / "helm" / "nova-jobs"))
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []  # warnings and errors


def test_exporter_runs_the_same_image_as_the_code_location_with_secrets_from_kubernetes(project_root, values):
    kinds = by_kind(render(project_root))
    assert set(kinds) == {"Deployment", "Service", "ServiceMonitor", "PrometheusRule"}
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]

    code_image = values["dagster-user-deployments"]["deployments"][0]["image"]
    assert container["image"] == f"{code_image['repository']}:{code_image['tag']}"
    assert container["args"][:2] == ["nova-jobs", "exporter"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert set(container["resources"]) == {"requests", "limits"}

    env = {item["name"]: item for item in container["env"]}
    assert env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": values["global"]["postgresqlSecretName"], "key": "postgresql-password"}
    assert container["envFrom"] == [{"secretRef": {"name": "nova-jobs-env"}}]
    assert all("value" not in env[name] for name in SECRET_SETTINGS & set(env))
    # The Dagster instance is the dagster release's (runs are read from its Postgres).
    mount = next(m for m in container["volumeMounts"] if m["name"] == "dagster-instance")
    assert mount["mountPath"] == "/opt/dagster/dagster_home/dagster.yaml"
    volume = next(v for v in pod["volumes"] if v["name"] == "dagster-instance")
    assert volume["configMap"]["name"] == "dagster-instance"


def test_service_and_servicemonitor_point_at_the_exporter_port(project_root):
    kinds = by_kind(render(project_root, {"exporter": {"port": 9200, "args": ["nova-jobs", "exporter"]}}))
    deployment, service, monitor = kinds["Deployment"], kinds["Service"], kinds["ServiceMonitor"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    port = service["spec"]["ports"][0]
    assert port["port"] == 9200
    assert deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == 9200
    assert monitor["spec"]["endpoints"][0]["port"] == port["name"] == "metrics"
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == ["nova-jobs"]


def test_alert_rules_use_only_the_contract_metrics_and_cover_every_job(project_root):
    groups = by_kind(render(project_root))["PrometheusRule"]["spec"]["groups"]
    # The chart ships files/alerts.yml itself, the copy promtool checks: one source of rules.
    assert groups == yaml.safe_load((project_root / "helm/nova-jobs/files/alerts.yml").read_text())["groups"]
    rules = [rule for rule in groups[0]["rules"] if "alert" in rule]
    names = {rule["alert"] for rule in rules}
    assert {"NovaJobUnhealthy", "NovaJobConsecutiveFailures", "NovaCacheStale", "NovaJobsDeadLetters",
            "NovaJobsExporterDown"} <= names
    for rule in rules:
        tokens = set(re.findall(r"\bjob_[a-z_]+", rule["expr"])) - {"job_name"}
        metrics = {re.sub(r"_(bucket|count|sum)$", "", token) for token in tokens}
        assert metrics <= CONTRACT_METRICS, (rule["alert"], metrics)
        assert rule["annotations"]["runbook_url"].split("#")[0].endswith("docs/RUNBOOK.md")
        assert rule["expr"].count("(") == rule["expr"].count(")")
    stale = next(rule for rule in rules if rule["alert"] == "NovaCacheStale")
    assert {job for job in JOBS if job in stale["expr"]} == JOBS
    # Anchors exist in the runbook.
    runbook = (project_root / "docs" / "RUNBOOK.md").read_text().lower()
    for anchor in {rule["annotations"]["runbook_url"].split("#")[1] for rule in rules}:
        heading = anchor.replace("-", " ")
        assert f"## {heading}" in runbook or f"### {heading}" in runbook, anchor


def test_alerts_and_monitor_can_be_switched_off(project_root):
    kinds = by_kind(render(project_root, {"serviceMonitor": {"enabled": False}, "prometheusRule": {"enabled": False}}))
    assert set(kinds) == {"Deployment", "Service"}


def test_dagster_values_use_only_keys_the_official_chart_accepts(values):
    daemon = values["dagsterDaemon"]
    assert daemon["runCoordinator"]["type"] == "CustomRunCoordinator"
    custom = daemon["runCoordinator"]["config"]["customRunCoordinator"]
    assert set(custom) <= CHART_KEYS["customRunCoordinator"]
    assert set(values["concurrency"]["pools"]) <= CHART_KEYS["pools"]
    assert set(daemon["runRetries"]) <= CHART_KEYS["runRetries"]
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert set(launcher) <= CHART_KEYS["k8sRunLauncher"]
    assert set(launcher["runK8sConfig"]) <= CHART_KEYS["runK8sConfig"]
    assert set(values["postgresql"]) <= CHART_KEYS["postgresql"]
    for deployment in values["dagster-user-deployments"]["deployments"]:
        assert set(deployment) <= CHART_KEYS["userDeployment"]
    for component in ("dagsterWebserver", "dagsterDaemon"):
        assert set(values[component]["image"]) <= CHART_KEYS["image"]


def test_webserver_and_daemon_can_import_nova_s_run_coordinator(values):
    """The instance's run coordinator is a class of `nova_jobs`: the processes that build it
    (the webserver submits runs, the daemon dequeues them) run the code location's image."""
    coordinator = values["dagsterDaemon"]["runCoordinator"]["config"]["customRunCoordinator"]
    assert coordinator["module"].startswith("nova_jobs.")
    code_image = values["dagster-user-deployments"]["deployments"][0]["image"]
    for component in ("dagsterWebserver", "dagsterDaemon"):
        image = values[component]["image"]
        assert (image["repository"], image["tag"]) == (code_image["repository"], code_image["tag"]), component


def test_dagster_values_match_the_production_instance(values, prod_instance):
    daemon = values["dagsterDaemon"]
    custom = daemon["runCoordinator"]["config"]["customRunCoordinator"]
    deployment = values["dagster-user-deployments"]["deployments"][0]
    env = {item["name"]: item["value"] for item in deployment["env"]}

    assert custom["config"]["max_concurrent_runs"] == 5 == int(env["MAX_CONCURRENT_JOBS"])
    assert (custom["module"], custom["class"]) == (prod_instance["run_coordinator"]["module"],
                                                   prod_instance["run_coordinator"]["class"])
    assert custom["config"]["tag_concurrency_limits"] == prod_instance["run_coordinator"]["config"]["tag_concurrency_limits"]
    pools = values["concurrency"]["pools"]
    assert (pools["defaultLimit"], pools["granularity"]) == (
        prod_instance["concurrency"]["pools"]["default_limit"], prod_instance["concurrency"]["pools"]["granularity"])
    monitoring = prod_instance["run_monitoring"]
    assert daemon["runMonitoring"]["enabled"] is monitoring["enabled"] is True
    assert daemon["runMonitoring"]["startTimeoutSeconds"] == monitoring["start_timeout_seconds"]
    assert daemon["runMonitoring"]["pollIntervalSeconds"] == monitoring["poll_interval_seconds"]
    retries = prod_instance["run_retries"]
    assert (daemon["runRetries"]["enabled"], daemon["runRetries"]["maxRetries"],
            daemon["runRetries"]["retryOnAssetOrOpFailure"]) == (
        retries["enabled"], retries["max_retries"], retries["retry_on_asset_or_op_failure"])
    postgres_db = prod_instance["storage"]["postgres"]["postgres_db"]
    assert values["postgresql"]["postgresqlScheme"] == postgres_db["scheme"]
    # Both deployments reach the managed Postgres over TLS only.
    assert values["postgresql"]["postgresqlParams"] == postgres_db["params"] == {"sslmode": "require"}
    assert env["NOVA_EXECUTOR"] == "k8s"
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "nova_jobs.definitions"]
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True


def test_instance_config_the_chart_generates_is_valid_for_dagster(values):
    """The run coordinator, monitoring and retries sections, translated the way the chart's
    configmap-instance.yaml does, load into a real instance with the intended behaviour."""
    daemon = values["dagsterDaemon"]
    custom = daemon["runCoordinator"]["config"]["customRunCoordinator"]
    pools = values["concurrency"]["pools"]
    overrides = {
        "run_coordinator": {"module": custom["module"], "class": custom["class"], "config": custom["config"]},
        "concurrency": {"pools": {"default_limit": pools["defaultLimit"], "granularity": pools["granularity"]}},
        "run_monitoring": {
            "enabled": daemon["runMonitoring"]["enabled"],
            "start_timeout_seconds": daemon["runMonitoring"]["startTimeoutSeconds"],
            "poll_interval_seconds": daemon["runMonitoring"]["pollIntervalSeconds"],
        },
        "run_retries": {
            "enabled": daemon["runRetries"]["enabled"],
            "max_retries": daemon["runRetries"]["maxRetries"],
            "retry_on_asset_or_op_failure": daemon["runRetries"]["retryOnAssetOrOpFailure"],
        },
    }
    with dg.instance_for_test(overrides=overrides) as instance:
        coordinator = instance.run_coordinator
        assert coordinator.get_run_queue_config().max_concurrent_runs == 5
        limits = coordinator.get_run_queue_config().tag_concurrency_limits
        assert [(limit["key"], limit["limit"]) for limit in limits] == [("nova/job", 1)]
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 1
        assert instance.run_retries_retry_on_asset_or_op_failure is False
        assert instance.run_monitoring_enabled
        pool_config = instance.get_concurrency_config().pool_config
        assert (pool_config.default_pool_limit, pool_config.pool_granularity.value) == (1, "run")


def test_no_literal_credentials_in_any_values(project_root, values):
    files = [project_root / "helm" / "dagster-values.yaml", project_root / "helm" / "nova-jobs" / "values.yaml",
             project_root / "deploy" / "dagster.prod.yaml"]
    for path in files:
        for key_path, value in walk(yaml.safe_load(path.read_text())):
            if isinstance(value, str):
                assert not re.search(r"://[^/@\s]*:[^/@\s]+@", value), (path.name, key_path)
            if re.search(r"(password|passwd|token)$", key_path.rsplit(".", 1)[-1], re.I):
                assert not (isinstance(value, str) and value), (path.name, key_path, "literal credential")
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert {item["name"] for item in deployment["env"]}.isdisjoint(SECRET_SETTINGS)
    assert deployment["envSecrets"] == [{"name": "nova-jobs-env"}]
    assert values["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"] == [{"name": "nova-jobs-env"}]
    assert values["generatePostgresqlPasswordSecret"] is False


def test_k8s_executor_is_selected_by_the_deployment_env(project_root, tmp_path):
    """What the user deployment's NOVA_EXECUTOR=k8s does: the suggestion shards run as a pod
    each; every other job runs its steps in its run pod."""
    code = (
        "import json\n"
        "from nova_jobs.definitions import defs\n"
        "repo = defs.get_repository_def()\n"
        "print(json.dumps({job.name: job.executor_def.name for job in repo.get_all_jobs()}))\n"
    )
    env = {"NOVA_EXECUTOR": "k8s", "CLICKHOUSE_URL": f"chdb://{tmp_path}/store", "REDIS_URL": "redis://localhost:1",
           "KAFKA_BROKERS": "localhost:1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=project_root, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    executors = json.loads(out.stdout.strip().splitlines()[-1])
    assert executors.pop("suggested_users") == "k8s"
    assert set(executors.values()) == {"in_process"}


def test_step_resource_tags_have_requests_and_limits():
    """Heavy steps carry `dagster-k8s/config` tags; each bounds both CPU and memory."""
    from nova_jobs.definitions import defs

    repo = defs.get_repository_def()
    tagged = {}
    for job in repo.get_all_jobs():
        for op_def in job.graph.iterate_op_defs():
            config = (op_def.tags or {}).get("dagster-k8s/config")
            if config:
                tagged[op_def.name] = yaml.safe_load(config) if isinstance(config, str) else config
        # A job whose run pod does the work says how big that pod must be.
        config = job.tags.get("dagster-k8s/config")
        if config:
            tagged[f"job {job.name}"] = yaml.safe_load(config) if isinstance(config, str) else config
    assert tagged, "no step sets its Kubernetes resources"
    assert "job cache_warmer" in tagged
    for name, config in tagged.items():
        resources = config["container_config"]["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), name
        assert {"cpu", "memory"} <= set(resources["limits"]), name


def test_exporter_args_are_what_the_exporter_cli_accepts(project_root):
    import argparse

    from nova_jobs.observability import cli

    container = by_kind(render(project_root))["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    parsed = parser.parse_args(container["args"][2:])
    assert parsed.host == "0.0.0.0"
    assert parsed.port == container["ports"][0]["containerPort"]


# Kubernetes Pod Security Standards, profile "restricted" (which includes "baseline"), as the
# PodSecurity admission controller checks a pod: kubernetes.io/docs/concepts/security/pod-security-standards
RESTRICTED_VOLUME_TYPES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                           "projected", "secret"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                "net.ipv4.tcp_keepalive_probes"}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
SECCOMP_TYPES = {"RuntimeDefault", "Localhost"}


def restricted_violations(pod: dict) -> list[str]:
    """What keeps a pod spec (camelCase, as the API server sees it) out of a namespace that
    enforces Pod Security "restricted"; empty when it is admitted."""
    problems = []
    pod_context = pod.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC", "hostUsers"):
        if pod.get(flag) is (flag != "hostUsers"):
            problems.append(f"spec.{flag}")
    for volume in pod.get("volumes") or []:
        if not set(volume) - {"name"} <= RESTRICTED_VOLUME_TYPES:
            problems.append(f"volume {volume['name']}: {sorted(set(volume) - {'name'})}")
    for sysctl in pod_context.get("sysctls") or []:
        if sysctl["name"] not in SAFE_SYSCTLS:
            problems.append(f"sysctl {sysctl['name']}")
    if pod_context.get("runAsNonRoot") is False or pod_context.get("runAsUser") == 0:
        problems.append("pod runs as root")
    if "seccompProfile" in pod_context and pod_context["seccompProfile"].get("type") not in SECCOMP_TYPES:
        problems.append("pod seccompProfile")
    containers = [*(pod.get("initContainers") or []), *pod["containers"], *(pod.get("ephemeralContainers") or [])]
    for container in containers:
        where = f"container {container['name']}"
        context = container.get("securityContext") or {}
        if context.get("privileged"):
            problems.append(f"{where}: privileged")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation must be false")
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            problems.append(f"{where}: capabilities must drop ALL")
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"{where}: adds capabilities {capabilities['add']}")
        if context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is not True or context.get("runAsUser") == 0:
            problems.append(f"{where}: runAsNonRoot must be true")
        seccomp = context.get("seccompProfile") or pod_context.get("seccompProfile") or {}
        if seccomp.get("type") not in SECCOMP_TYPES:
            problems.append(f"{where}: seccompProfile must be RuntimeDefault or Localhost")
        if any(port.get("hostPort") for port in container.get("ports") or []):
            problems.append(f"{where}: hostPort")
        if context.get("procMount", "Default") != "Default":
            problems.append(f"{where}: procMount")
        for level in (pod_context, context):
            selinux = level.get("seLinuxOptions") or {}
            if selinux.get("type", "") not in SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
                problems.append(f"{where}: seLinuxOptions")
            if (level.get("appArmorProfile") or {}).get("type") == "Unconfined":
                problems.append(f"{where}: appArmorProfile Unconfined")
            if (level.get("windowsOptions") or {}).get("hostProcess"):
                problems.append(f"{where}: hostProcess")
    return problems


def test_the_restricted_check_rejects_what_kubernetes_rejects():
    hardened = {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": False,
                                                          "capabilities": {"drop": ["ALL"]}}}],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    assert restricted_violations(hardened) == []
    breaks = [
        lambda pod: pod.update(hostNetwork=True),
        lambda pod: pod["volumes"].append({"name": "host", "hostPath": {"path": "/"}}),
        lambda pod: pod["securityContext"].pop("seccompProfile"),
        lambda pod: pod["securityContext"].update(seccompProfile={"type": "Unconfined"}),
        lambda pod: pod["securityContext"].pop("runAsNonRoot"),
        lambda pod: pod["containers"][0]["securityContext"].update(runAsUser=0),
        lambda pod: pod["containers"][0]["securityContext"].update(privileged=True),
        lambda pod: pod["containers"][0]["securityContext"].pop("allowPrivilegeEscalation"),
        lambda pod: pod["containers"][0]["securityContext"].update(capabilities={"drop": ["NET_RAW"]}),
        lambda pod: pod["containers"][0]["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]),
        lambda pod: pod["containers"][0].update(ports=[{"containerPort": 80, "hostPort": 80}]),
        lambda pod: pod.update(initContainers=[{"name": "init"}]),
    ]
    for index, breaking in enumerate(breaks):
        pod = json.loads(json.dumps(hardened))
        breaking(pod)
        assert restricted_violations(pod), index


def _run_launcher_context(values: dict):
    """The run launcher as the official chart configures it from helm/dagster-values.yaml."""
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import UserDefinedDagsterK8sConfig

    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    snake = {"containerConfig": "container_config", "podSpecConfig": "pod_spec_config",
             "podTemplateSpecMetadata": "pod_template_spec_metadata", "jobSpecConfig": "job_spec_config",
             "jobMetadata": "job_metadata"}
    run_k8s_config = {snake[key]: value for key, value in launcher.get("runK8sConfig", {}).items()}
    return K8sContainerContext(
        env_secrets=[secret["name"] for secret in launcher.get("envSecrets", [])],
        labels=launcher.get("labels"),
        resources=launcher.get("resources"),
        security_context=launcher.get("securityContext"),
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(run_k8s_config),
    )


def _job_pod_spec(values: dict, context, name: str, component: str) -> dict:
    """The Kubernetes Job dagster-k8s builds from a container context, as the API server gets it."""
    import kubernetes
    from dagster_k8s import construct_dagster_k8s_job

    image = values["dagster-user-deployments"]["deployments"][0]["image"]
    launcher = SimpleNamespace(job_image=f"{image['repository']}:{image['tag']}",
                               dagster_home="/opt/dagster/dagster_home", instance_config_map="dagster-instance",
                               postgres_password_secret=values["global"]["postgresqlSecretName"])
    job = construct_dagster_k8s_job(context.get_k8s_job_config(None, launcher), ["dagster", "api", name],
                                    f"dagster-{component}-0123456789", user_defined_k8s_config=context.run_k8s_config,
                                    component=component)
    manifest = kubernetes.client.ApiClient().sanitize_for_serialization(job)
    assert manifest["kind"] == "Job"
    return manifest["spec"]["template"]["spec"]


def test_run_pods_meet_pod_security_restricted(values):
    """Every job's run pod (K8sRunLauncher: the chart's runK8sConfig deep-merged with the job's
    `dagster-k8s/config` tag, as dagster-k8s merges them), built into a Job by dagster-k8s."""
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import get_user_defined_k8s_config

    from nova_jobs.definitions import defs

    launcher = _run_launcher_context(values)
    jobs = [job for job in defs.get_repository_def().get_all_jobs() if not job.name.startswith("__")]
    assert JOBS <= {job.name for job in jobs}
    for job in jobs:
        context = launcher.merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(job.tags)))
        pod = _job_pod_spec(values, context, "execute_run", "run_worker")
        assert restricted_violations(pod) == [], job.name
        assert pod["containers"][0]["resources"]["limits"], job.name  # the job's own sizing survives the merge


def test_step_pods_meet_pod_security_restricted(values, monkeypatch):
    """Every step's pod under the k8s executor (launcher config, then the executor's
    step_k8s_config, then the op's `dagster-k8s/config` tag, as K8sStepHandler merges them);
    also if the run launcher's config ever stops carrying the hardening."""
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import UserDefinedDagsterK8sConfig, get_user_defined_k8s_config

    from nova_jobs.definitions import defs
    from nova_jobs.executors import executor_for_sharded_jobs

    monkeypatch.setenv("NOVA_EXECUTOR", "k8s")
    executor = executor_for_sharded_jobs()
    assert executor.name == "k8s"
    step_k8s_config = executor.config_schema.resolve_config({}).value["config"]["step_k8s_config"]
    steps = K8sContainerContext(run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(step_k8s_config))

    checked = set()
    for launcher in (_run_launcher_context(values), K8sContainerContext()):
        for job in defs.get_repository_def().get_all_jobs():
            for op_def in job.graph.iterate_op_defs():
                context = launcher.merge(steps).merge(
                    K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(op_def.tags or {})))
                pod = _job_pod_spec(values, context, "execute_step", "step_worker")
                assert restricted_violations(pod) == [], op_def.name
                checked.add(op_def.name)
    assert "suggestions_shard_0" in checked


def test_user_deployment_and_exporter_pods_meet_pod_security_restricted(project_root, values):
    for deployment in values["dagster-user-deployments"]["deployments"]:
        pod = {"securityContext": deployment["podSecurityContext"],
               "containers": [{"name": deployment["name"], "securityContext": deployment["securityContext"]}]}
        assert restricted_violations(pod) == [], deployment["name"]
    exporter = by_kind(render(project_root))["Deployment"]["spec"]["template"]["spec"]
    assert restricted_violations(exporter) == []
