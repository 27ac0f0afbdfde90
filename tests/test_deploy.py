"""The deployment files, checked without Docker or Kubernetes: docker-compose.yml against the
Compose Specification's published JSON schema, pinned images, the variables configs/tokenize.yaml
reads, the Helm values against the chart's documented keys, and the warehouse's init SQL run on
a real Postgres, whose `tokenize` role then tokenizes `customers` with this package.
The compose stack itself runs only in the `docker` test, when a Docker daemon answers."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import jsonschema
import pytest
import sqlalchemy as sa
import yaml
from datahub.configuration.config_loader import EnvResolver

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
CONFIG_FILE = ROOT / "configs" / "tokenize.yaml"
HELM_DIR = ROOT / "deploy" / "helm"
INIT_SQL = ROOT / "docker" / "warehouse" / "init.sql"
CONF_PATH = "/etc/datahub/actions/conf/tokenize.yaml"

# The Compose Specification's JSON schema, as published on PyPI inside docker-compose 1.29.2
# (compose/config/compose_spec.json). Fetched into a temp dir at test time, never committed.
COMPOSE_SPEC_WHEEL = ("docker-compose==1.29.2", "compose/config/compose_spec.json")

# Top-level keys of the acryl-datahub-actions subchart's values, and their shapes, as documented in
# acryldata/datahub-helm at tag datahub-1.1.0 (commit 0e3940bd6be2c88277a7e3c62ed20121e158cbc7;
# chart `datahub` 1.1.0, appVersion v1.7.0, subchart 0.3.9):
# charts/datahub/subcharts/acryl-datahub-actions/values.yaml (all keys below except `enabled`),
# charts/datahub/values.yaml (`acryl-datahub-actions.enabled`, the chart's dependency condition).
CHART_ACTIONS_KEYS: dict[str, type | tuple[type, ...]] = {
    "enabled": bool, "replicaCount": int, "image": dict, "imagePullSecrets": list,
    "nameOverride": str, "fullnameOverride": str, "terminationGracePeriodSeconds": int,
    "serviceAccount": dict, "serviceMonitor": dict, "annotations": dict, "podAnnotations": dict,
    "podSecurityContext": dict, "securityContext": dict, "priorityClassName": (str, type(None)),
    "service": dict, "extraLabels": dict, "extraPodLabels": dict, "extraEnvs": list,
    "extraVolumes": list, "extraVolumeMounts": list, "extraInitContainers": list,
    "extraSidecars": list, "resources": dict, "nodeSelector": dict, "tolerations": list,
    "affinity": dict, "actions": dict, "ingestionSecretFiles": dict, "debug": dict, "global": dict,
}
# image.*: values.yaml has repository, pullPolicy, command, args; templates/_helpers.tpl
# ("datahub.image") reads image.registry and image.tag (default global.datahub.version).
CHART_IMAGE_KEYS = {"repository", "tag", "registry", "pullPolicy", "command", "args"}
# What the subchart's templates/deployment.yaml itself sets on the container (same release).
CHART_PROVIDED_ENV = {
    "DATAHUB_GMS_PROTOCOL", "DATAHUB_GMS_HOST", "DATAHUB_GMS_PORT", "GMS_HOST", "GMS_PORT",
    "KAFKA_BOOTSTRAP_SERVER", "SCHEMA_REGISTRY_URL", "KAFKA_AUTO_OFFSET_POLICY",
    "DATAHUB_SYSTEM_CLIENT_ID", "DATAHUB_SYSTEM_CLIENT_SECRET",
}
# What the stack needs beyond the config's own defaults (they point at localhost).
STACK_NEEDS = {"PG_HOST", "PG_USER", "PG_PASSWORD", "TOKENIZE_HMAC_KEY"}


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="session")
def compose_spec(tmp_path_factory) -> dict:
    """The Compose Specification JSON schema from the published docker-compose wheel (PyPI)."""
    dest = tmp_path_factory.mktemp("compose-spec")
    requirement, member = COMPOSE_SPEC_WHEEL
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
         "-d", str(dest), requirement],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, f"pip download {requirement} failed (PyPI needed):\n{proc.stderr}"
    (wheel,) = dest.glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        return json.loads(z.read(member))


def referenced_variables(config: dict) -> tuple[set[str], set[str]]:
    """(all variables configs/tokenize.yaml reads, those without a default), by DataHub's resolver."""
    every = EnvResolver.list_referenced_variables(config)
    required = set()
    for name in every:
        others = {v: "x" for v in every if v != name}
        try:
            EnvResolver(environ=others).resolve(config)
        except Exception:
            required.add(name)
    return every, required


# ---------------------------------------------------------------- compose


def test_compose_file_validates_against_the_compose_spec_schema(compose, compose_spec):
    validator_cls = jsonschema.validators.validator_for(compose_spec)
    validator_cls.check_schema(compose_spec)
    validator = validator_cls(compose_spec)
    errors = sorted(validator.iter_errors(compose), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
    # the schema is strict enough to catch a misspelt key
    broken = json.loads(json.dumps(compose))
    broken["services"]["warehouse"]["helthcheck"] = broken["services"]["warehouse"].pop("healthcheck")
    assert list(validator.iter_errors(broken))


def test_every_image_is_pinned_and_builds_use_docker_dockerfile(compose):
    for name, svc in compose["services"].items():
        image = svc.get("image")
        assert image, f"{name}: no image (a built service names its image too)"
        assert "${" not in image, f"{name}: image {image} depends on a variable"
        if "@sha256:" in image:
            continue
        repo, _, tag = image.rpartition(":")
        assert repo and "/" not in tag, f"{name}: image {image} has no tag"
        assert tag not in {"latest", "head", "main", "master", "stable"}, f"{name}: {image} is not pinned"
        if "build" in svc:
            assert svc["build"]["context"] == "."
            assert svc["build"]["dockerfile"] == "docker/Dockerfile"
            assert svc["build"]["args"]["DATAHUB_ACTIONS_TAG"] == "v1.7.0-slim"


def test_datahub_services_are_the_quickstart_ones_at_one_release(compose):
    images = {svc["image"].rpartition(":")[0]: svc["image"].rpartition(":")[2] for svc in compose["services"].values()}
    for repo in ("acryldata/datahub-gms", "acryldata/datahub-frontend-react", "acryldata/datahub-upgrade"):
        assert images[repo] == "v1.7.0"
    assert images["acryldata/datahub-ingestion"] == "v1.7.0-slim"
    services = compose["services"]
    assert services["system-update"]["command"] == ["-u", "SystemUpdate"]
    assert services["datahub-gms"]["depends_on"]["system-update"]["condition"] == "service_completed_successfully"
    for dep in ("broker", "mysql", "opensearch"):
        assert services["system-update"]["depends_on"][dep]["condition"] == "service_healthy"
        assert "healthcheck" in services[dep]


def test_actions_service_runs_the_config_from_the_stock_conf_dir_with_its_variables(compose):
    svc = compose["services"]["datahub-actions"]
    mounts = [v.split(":") for v in svc.get("volumes", [])]
    assert ["./configs/tokenize.yaml", CONF_PATH, "ro"] in mounts
    env = svc["environment"]
    every, required = referenced_variables(load_yaml(CONFIG_FILE))
    assert required == {"TOKENIZE_HMAC_KEY"}  # the one variable without a default today
    missing = (required | STACK_NEEDS) - set(env)
    assert not missing, f"the actions service does not set {sorted(missing)}"
    assert env["PG_HOST"] == "warehouse" and env["PG_USER"] == "tokenize"
    assert env["TOKENIZE_AUTO_OFFSET_RESET"] == "earliest" and "TOKENIZE_AUTO_OFFSET_RESET" in every
    # as DataHub's quickstart sets them for its actions container
    assert env["KAFKA_BOOTSTRAP_SERVER"] == "broker:29092"
    assert env["SCHEMA_REGISTRY_URL"] == "http://datahub-gms:8080/schema-registry/api/"
    assert (env["DATAHUB_GMS_PROTOCOL"], env["DATAHUB_GMS_HOST"], env["DATAHUB_GMS_PORT"]) == ("http", "datahub-gms", "8080")
    assert {"DATAHUB_SYSTEM_CLIENT_ID", "DATAHUB_SYSTEM_CLIENT_SECRET"} <= set(env)
    assert {"DATAHUB_GMS_PROTOCOL", "KAFKA_BOOTSTRAP_SERVER", "SCHEMA_REGISTRY_URL"} <= every


def test_secrets_come_from_env_only(compose):
    """No password or key is written in the compose file: each is ${VAR:?...} from the generated .env."""
    text = COMPOSE_FILE.read_text()
    gen = (ROOT / "docker" / "gen-env.sh").read_text()
    for name in re.findall(r"\$\{([A-Z_]+):\?", text):
        assert re.search(rf"^{name}=\$\(rand \d+\)$", gen, re.M), f"{name} is not generated by gen-env.sh"
    for svc in compose["services"].values():
        for key, value in (svc.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|SALT|SIGNING_KEY|HMAC_KEY", key) and not key.endswith("_ID"):
                assert str(value).startswith("${"), f"{key} has a literal value"
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_ingest_job_runs_after_the_actions_service_in_the_ingestion_image(compose):
    svc = compose["services"]["ingest"]
    assert svc["image"].startswith("acryldata/datahub-ingestion:")
    assert svc["depends_on"]["datahub-actions"]["condition"] == "service_started"
    assert svc["depends_on"]["datahub-gms"]["condition"] == "service_healthy"
    script = (ROOT / "docker" / "ingest" / "ingest_and_tag.py").read_text()
    assert "pattern_add_dataset_schema_tags" in script and "urn:li:tag:tokenize/run" in script


# ---------------------------------------------------------------- warehouse SQL


def readme_postgres_grants() -> set[str]:
    """The privileges README.md's Postgres "Permissions" paragraph lists."""
    text = (ROOT / "README.md").read_text()
    para = next(p for p in text.split("\n\n") if p.startswith("**Permissions** the connection's user needs"))
    return set(re.findall(r"`([A-Z]+(?:, [A-Z]+)*)`", para.split("; all but")[0]))


def test_init_sql_grants_the_tokenize_role_exactly_what_the_readme_lists():
    assert readme_postgres_grants() == {"CONNECT", "USAGE", "SELECT, UPDATE", "TEMPORARY"}
    grants = re.findall(r'^GRANT (.+?) ON (.+?) TO :"tokenize_role";$', INIT_SQL.read_text(), re.M)
    assert sorted(grants) == sorted([
        ("CONNECT", 'DATABASE :"dbname"'), ("USAGE", "SCHEMA public"),
        ("SELECT, UPDATE", "TABLE public.customers"), ("TEMPORARY", 'DATABASE :"dbname"'),
    ])


@pytest.mark.postgres
def test_init_sql_on_a_real_postgres_gives_a_role_that_can_tokenize_customers(pg_server_url, tmp_path):
    """Runs docker/warehouse/init.sql with psql as the image's initdb.sh does, then
    `datahub-tokenize run` as the `tokenize` role: 300 rows, then 0 on a second run."""
    from datahub_tokenize_action.testing.postgres import find_bindir

    psql = shutil.which("psql") or os.path.join(find_bindir(), "psql")
    url = sa.make_url(pg_server_url)
    suffix = uuid.uuid4().hex[:8]
    db, role, reader, password = f"appdb_{suffix}", f"tokenize_{suffix}", f"reader_{suffix}", f"pw-{suffix}"
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{db}"'))
    try:
        proc = subprocess.run(
            [psql, "-X", "-q", "-h", url.host, "-p", str(url.port), "-U", url.username or "postgres", "-d", db,
             "-v", f"dbname={db}", "-v", f"tokenize_role={role}", "-v", f"tokenize_password={password}",
             "-v", f"reader_role={reader}", "-v", f"reader_password={password}", "-f", str(INIT_SQL)],
            capture_output=True, text=True, timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        owner = sa.create_engine(url.set(database=db))
        with owner.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*), count(phone) FROM public.customers")).one() == (300, 258)
            privs = conn.execute(sa.text(
                "SELECT has_database_privilege(:r, current_database(), 'CONNECT'),"
                " has_database_privilege(:r, current_database(), 'TEMPORARY'),"
                " has_database_privilege(:r, current_database(), 'CREATE'),"
                " has_table_privilege(:r, 'public.customers', 'SELECT'),"
                " has_table_privilege(:r, 'public.customers', 'UPDATE'),"
                " has_table_privilege(:r, 'public.customers', 'INSERT'),"
                " has_table_privilege(:r, 'public.customers', 'DELETE'),"
                " has_database_privilege(:reader, current_database(), 'TEMPORARY'),"
                " has_table_privilege(:reader, 'public.customers', 'UPDATE')"), {"r": role, "reader": reader}).one()
            assert tuple(privs) == (True, True, False, True, True, False, False, False, False)
        owner.dispose()

        config = tmp_path / "tokenize.yaml"
        config.write_text(
            "action:\n  type: tokenize\n  config:\n    connections:\n      - platform: postgres\n"
            f"        url: postgresql+psycopg2://{role}@{url.host}:{url.port}\n"
            "        password: ${PG_PASSWORD}\n"
            "    tokenizer:\n      type: hmac\n      key: ${TOKENIZE_HMAC_KEY}\n")
        env = {**os.environ, "PG_PASSWORD": password, "TOKENIZE_HMAC_KEY": "deploy-test-hmac-key-0123456789"}
        exe = shutil.which("datahub-tokenize", path=os.path.dirname(sys.executable))
        cmd = [exe] if exe else [sys.executable, "-m", "datahub_tokenize_action.cli"]
        dataset = f"urn:li:dataset:(urn:li:dataPlatform:postgres,{db}.public.customers,PROD)"
        results = []
        for _ in range(2):
            run = subprocess.run([*cmd, "run", "-c", str(config), "--dataset", dataset,
                                  "--columns", "full_name,email,phone", "--no-write-back", "--json", "-q"],
                                 env=env, capture_output=True, text=True, timeout=120)
            assert run.returncode == 0, run.stderr
            results.append(json.loads(run.stdout))
        assert [r["status"] for r in results] == ["SUCCESS", "SUCCESS"]
        assert results[0]["rows_updated"] == 300 and results[1]["rows_updated"] == 0
        owner = sa.create_engine(url.set(database=db))
        with owner.connect() as conn:
            left = conn.execute(sa.text(
                "SELECT count(*) FROM public.customers WHERE email NOT LIKE 'tok2\\_%' OR full_name NOT LIKE 'tok2\\_%'"
                " OR phone NOT LIKE 'tok2\\_%' OR city LIKE 'tok%'")).scalar()
            assert left == 0
        owner.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
            conn.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))
            conn.execute(sa.text(f'DROP ROLE IF EXISTS "{reader}"'))
        admin.dispose()


# ---------------------------------------------------------------- Helm


@pytest.fixture(scope="module")
def helm_values() -> dict:
    return load_yaml(HELM_DIR / "values-tokenize.yaml")["acryl-datahub-actions"]


def test_helm_values_use_only_the_charts_documented_keys_with_their_shapes(helm_values):
    unknown = set(helm_values) - set(CHART_ACTIONS_KEYS)
    assert not unknown, f"keys the acryl-datahub-actions subchart does not document: {sorted(unknown)}"
    for key, value in helm_values.items():
        assert isinstance(value, CHART_ACTIONS_KEYS[key]), f"{key}: {type(value).__name__}"
    assert set(helm_values["image"]) <= CHART_IMAGE_KEYS
    tag = helm_values["image"]["tag"]
    assert tag and tag not in {"latest", "head"}
    for env in helm_values["extraEnvs"]:
        assert set(env) in ({"name", "value"}, {"name", "valueFrom"}), env
        if "value" in env:
            assert isinstance(env["value"], str), f"{env['name']}: Kubernetes env values are strings"


def test_helm_secrets_and_config_map_are_wired_to_the_manifests(helm_values):
    secret = load_yaml(HELM_DIR / "tokenize-secret.yaml")
    configmap = load_yaml(HELM_DIR / "tokenize-configmap.yaml")
    assert secret["kind"] == "Secret" and configmap["kind"] == "ConfigMap"
    refs = [e["valueFrom"]["secretKeyRef"] for e in helm_values["extraEnvs"] if "valueFrom" in e]
    assert refs and all(r["name"] == secret["metadata"]["name"] and r["key"] in secret["stringData"] for r in refs)
    secret_envs = {e["name"] for e in helm_values["extraEnvs"] if "valueFrom" in e}
    assert {"PG_PASSWORD", "TOKENIZE_HMAC_KEY"} <= secret_envs
    (volume,) = helm_values["extraVolumes"]
    (mount,) = helm_values["extraVolumeMounts"]
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    assert mount["name"] == volume["name"] and mount["mountPath"] == CONF_PATH
    assert mount["subPath"] in configmap["data"]


def test_helm_config_map_holds_configs_tokenize_yaml_unchanged():
    configmap = load_yaml(HELM_DIR / "tokenize-configmap.yaml")
    assert configmap["data"]["tokenize.yaml"] == CONFIG_FILE.read_text(), (
        "deploy/helm/tokenize-configmap.yaml differs from configs/tokenize.yaml: copy the file in again")


def test_helm_deployment_gets_every_variable_the_config_needs(helm_values):
    _, required = referenced_variables(load_yaml(CONFIG_FILE))
    provided = CHART_PROVIDED_ENV | {e["name"] for e in helm_values["extraEnvs"]}
    missing = (required | STACK_NEEDS) - provided
    assert not missing, f"neither the chart nor extraEnvs set {sorted(missing)}"


# ---------------------------------------------------------------- live


def _docker_answers() -> str | None:
    if not shutil.which("docker"):
        return "no docker command on PATH"
    try:
        proc = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"docker info failed: {e}"
    return None if proc.returncode == 0 else f"no Docker daemon answers (docker info: {proc.stderr.strip()[:200]})"


@pytest.mark.docker
def test_compose_stack_tokenizes_customers_end_to_end():
    """make up; make e2e; make down (always), with a real Docker daemon."""
    reason = _docker_answers()
    if reason:
        pytest.skip(reason)
    try:
        subprocess.run(["make", "up"], cwd=ROOT, check=True, timeout=1800)
        subprocess.run(["make", "e2e"], cwd=ROOT, check=True, timeout=1800)
    finally:
        subprocess.run(["make", "down"], cwd=ROOT, timeout=600)
