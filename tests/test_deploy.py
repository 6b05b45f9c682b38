"""deploy/: every file checked as far as this machine can. The systemd unit with
`systemd-analyze`, the Kubernetes manifests and the compose file parsed and matched against the
code (route table, settings), the nginx front tested with `nginx -t` and then run in front of a
real tidegate, and the Dockerfile's steps run as a script in a fresh venv, as its user."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
import yaml

from support.processes import WAIT, free_port

from tidegate.app import make_app
from tidegate.config import build, load

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
JSON = "application/vnd.pypi.simple.v1+json"


# --- the Dockerfile, parsed ---

def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    steps, pending = [], ""
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip("\\").strip() + " " if line.endswith("\\") else line.strip()
        if not line.endswith("\\"):
            word, _, rest = pending.partition(" ")
            steps.append((word.upper(), rest.strip()))
            pending = ""
    return steps


def docker_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in dockerfile():
        if word == "ENV":
            for assignment in shlex.split(rest):
                key, _, value = assignment.partition("=")
                env[key] = re.sub(r"\$(\w+)", lambda m: env.get(m.group(1), os.environ.get(m.group(1), "")), value)
    return env


def docker_uid() -> int:
    (run,) = [rest for word, rest in dockerfile() if word == "RUN" and "useradd" in rest]
    return int(re.search(r"--uid (\d+)", run).group(1))


def route_paths() -> set[str]:
    app = make_app(build({}))
    return {r.resource.canonical for r in app.router.routes() if r.resource is not None}


def test_dockerfile_shape():
    steps = dockerfile()
    words = [w for w, _ in steps]
    assert steps[0][0] == "FROM" and "-slim" in steps[0][1]
    env = docker_env()
    (user,) = [rest for w, rest in steps if w == "USER"]
    assert user == "tidegate" and docker_uid() != 0
    assert words.index("USER") > max(i for i, w in enumerate(words) if w == "RUN")  # nothing runs as root after
    (volume,) = [json.loads(rest) for w, rest in steps if w == "VOLUME"]
    assert volume == [env["TIDEGATE_DATA_DIR"]]
    (expose,) = [rest for w, rest in steps if w == "EXPOSE"]
    assert int(expose) == int(env["TIDEGATE_PORT"])
    (entry,) = [rest for w, rest in steps if w == "ENTRYPOINT"]
    assert json.loads(entry) == ["tidegate", "serve"]  # exec form: SIGTERM reaches tidegate
    (check,) = [rest for w, rest in steps if w == "HEALTHCHECK"]
    assert "/health" in check and "/health" in route_paths()
    assert build({k.removeprefix("TIDEGATE_").lower(): v for k, v in env.items() if k.startswith("TIDEGATE_")})


def _healthcheck_command() -> list[str]:
    (check,) = [rest for w, rest in dockerfile() if w == "HEALTHCHECK"]
    return json.loads(check.partition("CMD ")[2])


def test_dockerfile_steps_run_as_a_script_in_a_fresh_venv(tmp_path):
    """COPY into a scratch root, every RUN step there (paths under the scratch root; user
    creation and chown, which would change this machine, are checked but left out), then the
    ENTRYPOINT with the image's ENV as the image's user, until the HEALTHCHECK passes. No index
    is reachable from tests: pip gets `--no-index --no-build-isolation`, and the fresh venv sees
    the test environment's packages (pip, setuptools, the dependencies) through a .pth file in
    place of downloading them."""
    scratch = Path(tempfile.mkdtemp(prefix="tidegate-image-"))
    scratch.chmod(0o755)  # the image's user must reach it
    try:
        _run_image_steps(scratch, tmp_path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _run_image_steps(scratch: Path, tmp_path: Path) -> None:
    def inside(text: str) -> str:  # container paths -> scratch paths
        return re.sub(r"(?<![\w.])/(opt|src|data)\b", lambda m: f"{scratch}/{m.group(1)}", text)

    site = next(Path(p) for p in sys.path if p.endswith("site-packages"))
    as_user = os.geteuid() == 0
    uid = docker_uid()
    for word, rest in dockerfile():
        if word == "COPY":
            *sources, dest = rest.split()
            target = Path(inside(dest))
            for source in sources:
                if dest.endswith("/"):
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy(ROOT / source, target / source)
                else:
                    shutil.copytree(ROOT / source, target)
        elif word == "RUN":
            if "useradd" in rest:
                assert "chown tidegate" in rest and "/data" in rest
                (scratch / "data").mkdir()
                if as_user:
                    os.chown(scratch / "data", uid, uid)
                continue
            script = inside(rest).replace("pip install", "pip install --no-index --no-build-isolation")
            if "python -m venv" in rest:
                venv = re.search(r"python -m venv (\S+)", script).group(1)
                # The dependencies and build backend, from the test environment instead of an index.
                script = script.replace(f"python -m venv {venv}", f"{sys.executable} -m venv --without-pip {venv} && "
                                        f"echo {site} > $({venv}/bin/python -c 'import sysconfig; "
                                        f"print(sysconfig.get_path(\"purelib\"))')/test-env.pth")
                script = script.replace(f"{venv}/bin/pip ", f"{venv}/bin/python -m pip ")
            done = subprocess.run(["sh", "-ec", script], capture_output=True, text=True,
                                  env={**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INPUT": "1"})
            assert done.returncode == 0, done.stdout + done.stderr
    assert not (scratch / "src").exists()  # the image keeps no source tree
    installed = list((scratch / "opt" / "tidegate").glob("lib/python*/site-packages/tidegate/process.py"))
    assert installed, "the project was not installed into the image's venv"
    port = free_port()
    env = {k: inside(v) for k, v in docker_env().items()} | {"TIDEGATE_PORT": str(port), "HOME": str(scratch / "data")}
    env["TIDEGATE_UPSTREAM"] = "http://127.0.0.1:9/simple/"
    (entry,) = [json.loads(rest) for w, rest in dockerfile() if w == "ENTRYPOINT"]
    exe = shutil.which(entry[0], path=env["PATH"])
    assert exe == f"{scratch}/opt/tidegate/bin/tidegate"  # the venv's, found through the image's PATH
    drop = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"] if as_user else []
    proc = subprocess.Popen([*drop, exe, *entry[1:]], env=env, cwd=scratch / "data",
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        check = _healthcheck_command()
        check[0] = shutil.which(check[0], path=env["PATH"])
        for _ in range(WAIT * 10):
            if subprocess.run(check, env=env, capture_output=True).returncode == 0:
                break
            assert proc.poll() is None, proc.stdout.read().decode()
            subprocess.run(["sleep", "0.1"])
        else:
            raise AssertionError("the HEALTHCHECK never passed")
        owner = (scratch / "data" / "local" / "index.db").stat().st_uid
        assert owner == (uid if as_user else os.geteuid())  # state written as the image's user
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=WAIT)[0].decode()
    assert proc.returncode == 0, out


@pytest.mark.slow
def test_docker_build():
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "info"], capture_output=True).returncode != 0:
        pytest.skip("no Docker daemon on this machine: the image build is checked where one runs")
    done = subprocess.run([docker, "build", "-f", str(DEPLOY / "Dockerfile"), "-t", "tidegate:test", str(ROOT)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# --- systemd ---

def unit() -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for line in (DEPLOY / "tidegate.service").read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            keys.setdefault(key.strip(), []).append(value.strip())
    return keys


def test_systemd_unit_is_hardened():
    keys = unit()
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "DynamicUser": "yes",
                       "StateDirectory": "tidegate", "KillSignal": "SIGTERM", "PrivateTmp": "yes"}.items():
        assert keys[key] == [value], key
    (data_dir,) = [v.partition("=")[2] for v in keys["Environment"] if v.startswith("TIDEGATE_DATA_DIR=")]
    assert data_dir == "/var/lib/" + keys["StateDirectory"][0]  # the one writable place
    stop = float(keys["TimeoutStopSec"][0].rstrip("s"))
    assert stop > build({}).shutdown_timeout


def test_systemd_unit_passes_systemd_analyze(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("SYSTEMD-ANALYZE IS NOT INSTALLED: the unit is NOT verified (apt-get install systemd)")
    # verify wants ExecStart's program to exist: the unit as installed, with tidegate where it is here.
    exe = Path(sys.executable).with_name("tidegate")
    assert exe.is_file()
    text = (DEPLOY / "tidegate.service").read_text().replace("/opt/tidegate/bin/tidegate", str(exe))
    (tmp_path / "tidegate.service").write_text(text)
    done = subprocess.run([analyze, "verify", str(tmp_path / "tidegate.service")], capture_output=True, text=True)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    # Exposure 0-10 as printed, 0-100 as --threshold counts: fail above 3.0 ("OK" ends at 4.9).
    done = subprocess.run([analyze, "security", "--offline=yes", "--threshold=30", str(tmp_path / "tidegate.service")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:]


# --- Kubernetes ---

def manifests() -> dict[str, dict]:
    found = {}
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            found[doc["kind"]] = doc
    return found


def test_kubernetes_manifests_match_the_code(tmp_path):
    docs = manifests()
    assert {"ConfigMap", "Service", "StatefulSet"} <= set(docs)
    config = tmp_path / "tidegate.toml"
    config.write_text(docs["ConfigMap"]["data"]["tidegate.toml"])
    settings = load(str(config), {}, {})  # the real parser: a bad key would fail here
    assert settings.host == "0.0.0.0"
    sts = docs["StatefulSet"]["spec"]
    pod = sts["template"]["spec"]
    (container,) = pod["containers"]
    (port,) = container["ports"]
    assert port["containerPort"] == settings.port
    assert docs["Service"]["spec"]["ports"][0]["targetPort"] == port["name"]
    assert docs["Service"]["spec"]["selector"] == sts["selector"]["matchLabels"] == sts["template"]["metadata"]["labels"]
    routes = route_paths()
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": port["name"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": port["name"]}
    assert {"/health", "/ready"} <= routes
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["data"] == str(settings.data_dir)
    assert sts["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert container["args"] == ["--config", f"{mounts['config']}/tidegate.toml"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == docker_uid()
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
    assert pod["terminationGracePeriodSeconds"] > settings.shutdown_timeout


# --- compose and its nginx front ---

def test_compose_matches_the_image_and_the_front():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    app, front = compose["services"]["tidegate"], compose["services"]["front"]
    assert (DEPLOY / app["build"]["context"] / app["build"]["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    env = docker_env()
    (data,) = [v.split(":")[1] for v in app["volumes"] if not v.lstrip().startswith("#")]
    assert data == env["TIDEGATE_DATA_DIR"]
    assert app["expose"] == [env["TIDEGATE_PORT"]]
    assert front["depends_on"]["tidegate"]["condition"] == "service_healthy"  # the image's HEALTHCHECK
    mounted = {v.split(":")[0]: v.split(":")[1] for v in front["volumes"]}
    assert mounted["./nginx.conf"].startswith("/etc/nginx/conf.d/") and (DEPLOY / "nginx.conf").is_file()
    assert f"server tidegate:{env['TIDEGATE_PORT']};" in (DEPLOY / "nginx.conf").read_text()
    assert "443:443" in front["ports"]
    grace = float(app["stop_grace_period"].rstrip("s"))
    assert grace > build(docker_env_settings()).shutdown_timeout


def docker_env_settings() -> dict[str, str]:
    return {k.removeprefix("TIDEGATE_").lower(): v for k, v in docker_env().items() if k.startswith("TIDEGATE_")}


@pytest.fixture
def nginx_front(tmp_path):
    """Start deploy/nginx.conf (inside a minimal main config) in front of `origin`; rewritten
    only where this machine differs from the compose network: the upstream address, the listen
    ports (IPv4 only), the certificate paths and where nginx keeps its own files."""
    nginx = shutil.which("nginx")
    if nginx is None:
        pytest.skip("nginx is not installed: the front's configuration is not tested (apt-get install nginx)")
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: no certificate for the front, so it is not tested")
    started = []

    def start(origin_port: int) -> int:
        certs = tmp_path / "certs"
        certs.mkdir()
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                        "-keyout", str(certs / "tls.key"), "-out", str(certs / "tls.crt")], check=True, capture_output=True)
        port, plain = free_port(), free_port()
        text = (DEPLOY / "nginx.conf").read_text()
        text = re.sub(r"server tidegate:\d+;", f"server 127.0.0.1:{origin_port};", text)
        text = re.sub(r"\n\s*listen \[::\]:\d+[^;]*;", "", text)
        text = text.replace("listen 443 ", f"listen 127.0.0.1:{port} ").replace("listen 80;", f"listen 127.0.0.1:{plain};")
        text = text.replace("/etc/nginx/certs/", f"{certs}/")
        (tmp_path / "front.conf").write_text(text)
        (tmp_path / "main.conf").write_text(
            f"worker_processes 1;\npid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
            "events { worker_connections 64; }\n"
            f"http {{\n  access_log off;\n  client_body_temp_path {tmp_path}/body;\n  proxy_temp_path {tmp_path}/proxy;\n"
            f"  include {tmp_path}/front.conf;\n}}\n")
        cmd = [nginx, "-p", str(tmp_path), "-c", str(tmp_path / "main.conf")]
        tested = subprocess.run([*cmd, "-t"], capture_output=True, text=True)
        assert tested.returncode == 0, tested.stderr
        started.append(subprocess.Popen([*cmd, "-g", "daemon off;"], stderr=subprocess.PIPE))
        return port

    yield start
    for proc in started:
        proc.send_signal(signal.SIGQUIT)
        proc.wait(WAIT)


async def test_nginx_front_keeps_vary_and_cache_control_and_recompresses_nothing(
        nginx_front, tidegate, fake_index, dists):
    idx = await fake_index("json")
    wheel = dists.wheel("demo-pkg", "1.0", padding=300_000)
    idx.index.add(wheel)
    tg = await tidegate(upstreams=[idx.url], users=[{"name": "ci", "password": "s3cret", "upload": ["*"]}])
    port = nginx_front(tg.port)
    front = f"https://127.0.0.1:{port}"
    tls = ssl.create_default_context()
    tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
    async with aiohttp.ClientSession(auto_decompress=False, connector=aiohttp.TCPConnector(ssl=tls)) as session:
        for _ in range(WAIT * 10):
            try:
                async with session.get(front + "/health") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
        headers = {"Accept": JSON, "Accept-Encoding": "gzip"}
        async with tg.get("/simple/demo-pkg/", headers=headers) as r:
            direct, direct_body = r.headers, await r.read()
        async with session.get(front + "/simple/demo-pkg/", headers=headers) as r:
            assert r.status == 200
            through, body = r.headers, await r.read()
        for header in ("Vary", "Cache-Control", "ETag", "Content-Type", "Content-Encoding"):
            assert through.get(header) == direct.get(header), header
        assert body == direct_body  # tidegate's own gzip, not nginx's
        if through.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        assert json.loads(body)["name"] == "demo-pkg"
        # A file comes byte for byte, uncompressed, whatever the client accepts.
        async with session.get(f"{front}/files/demo-pkg/{wheel.name}", headers={"Accept-Encoding": "gzip"}) as r:
            assert r.status == 200 and "Content-Encoding" not in r.headers
            assert await r.read() == wheel.read_bytes()
        # A large upload reaches tidegate (nginx's own default would refuse it with 413).
        big = aiohttp.FormData({":action": "file_upload", "name": "demo-pkg", "version": "9.0"})
        big.add_field("content", os.urandom(3 * 1024 * 1024), filename="demo_pkg-9.0-py3-none-any.whl")
        async with session.post(front + "/legacy/", data=big) as r:
            assert r.status == 401  # tidegate's answer: no credentials


# --- the shared set-up: several replicas on PostgreSQL and S3 (deploy/cluster, deploy/k8s-cluster) ---

CLUSTER = DEPLOY / "cluster"


def _expand(value: str, env: dict[str, str]) -> str:
    """compose's ${NAME} and ${NAME:?message}, from env."""
    return re.sub(r"\$\{(\w+)(?::\?[^}]*)?\}", lambda m: env[m.group(1)], value)


def _dotenv(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))


def _flag(args: list[str], name: str) -> str:
    (value,) = [a.split("=", 1)[1] for a in args if a.startswith(f"-{name}=")]
    return value


def test_cluster_compose_matches_the_code():
    compose = yaml.safe_load((CLUSTER / "compose.yaml").read_text())
    services = compose["services"]
    app, lb, pg, s3 = services["tidegate"], services["lb"], services["postgres"], services["seaweedfs"]
    assert (CLUSTER / app["build"]["context"] / app["build"]["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    assert app["deploy"]["replicas"] >= 2
    assert "volumes" not in app  # each replica its own /data (the image's VOLUME): a shared one would mix hosts' state
    dotenv = _dotenv(CLUSTER / ".env.example")
    env = {k: _expand(str(v), dotenv) for k, v in app["environment"].items()}
    image = docker_env()
    settings = load(None, {**image, **env}, {})  # every TIDEGATE_* name and value the code knows
    assert {k for k in env if k.startswith("TIDEGATE_")} <= {f"TIDEGATE_{k.upper()}" for k in settings.__dataclass_fields__} | {"TIDEGATE_UPSTREAM"}
    assert settings.blob_store.startswith("s3://") and settings.database_url.startswith("postgresql://")
    db = urlsplit(settings.database_url)
    assert db.hostname == "postgres" and db.port == 5432 and db.path == "/" + pg["environment"]["POSTGRES_DB"]
    assert db.username == pg["environment"]["POSTGRES_USER"]
    assert db.password == _expand(pg["environment"]["POSTGRES_PASSWORD"], dotenv)
    endpoint = urlsplit(settings.s3_endpoint_url)
    assert endpoint.hostname == "seaweedfs" and str(endpoint.port) == _flag(s3["command"], "s3.port")
    assert [str(endpoint.port)] == s3["expose"]
    # The S3 keys tidegate signs with are those the gateway's config accepts.
    identities = json.loads((CLUSTER / "s3.example.json").read_text())["identities"]
    keys = {(c["accessKey"], c["secretKey"]) for i in identities for c in i["credentials"]}
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) in keys
    assert _flag(s3["command"], "s3.config") == "/etc/seaweedfs/s3.json"
    assert app["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert app["expose"] == [image["TIDEGATE_PORT"]] and settings.port == int(image["TIDEGATE_PORT"])
    assert lb["depends_on"]["tidegate"]["condition"] == "service_healthy"
    mounted = dict(v.split(":")[:2] for v in lb["volumes"])
    assert mounted["./nginx.conf"].startswith("/etc/nginx/conf.d/")
    assert re.search(rf"server tidegate:{settings.port}\b", (CLUSTER / "nginx.conf").read_text())
    assert float(app["stop_grace_period"].rstrip("s")) > settings.shutdown_timeout


def test_cluster_balancer_keeps_vary_and_cache_control_and_passes_failover():
    text = "\n".join(line.partition("#")[0] for line in (CLUSTER / "nginx.conf").read_text().splitlines())
    for directive in ("proxy_buffering    off;", "proxy_request_buffering off;", "client_max_body_size    0;",
                      "gzip off;", "proxy_next_upstream error timeout;"):
        assert directive in text, directive
    for hiding in ("proxy_cache ", "proxy_hide_header", "add_header", "expires "):
        assert hiding not in text, hiding  # nothing sets, hides or caches what tidegate sends
    assert "ip_hash" not in text and "sticky" not in text  # any replica answers any request


def cluster_manifests() -> dict[tuple[str, str], dict]:
    found = {}
    for path in sorted((DEPLOY / "k8s-cluster").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def test_cluster_kubernetes_manifests_match_the_code(tmp_path):
    docs = cluster_manifests()
    deployment = docs[("Deployment", "tidegate-cluster")]["spec"]
    config = tmp_path / "tidegate.toml"
    config.write_text(docs[("ConfigMap", "tidegate-cluster")]["data"]["tidegate.toml"])
    secret = docs[("Secret", "tidegate-cluster")]["stringData"]
    settings = load(str(config), secret, {})  # the real parser, with the Secret as the environment
    assert deployment["replicas"] >= 2 and deployment["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = deployment["template"]["spec"]
    (container,) = pod["containers"]
    assert container["envFrom"] == [{"secretRef": {"name": "tidegate-cluster"}}]
    assert {k for k in secret if k.startswith("TIDEGATE_")} == {"TIDEGATE_DATABASE_URL"}
    (port,) = container["ports"]
    assert port["containerPort"] == settings.port
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": port["name"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": port["name"]}
    assert {"/ready", "/health"} <= route_paths()
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["data"] == str(settings.data_dir)
    (data,) = [v for v in pod["volumes"] if v["name"] == "data"]
    assert "emptyDir" in data  # per pod: only its disk tier and host-local state
    assert container["args"] == ["--config", f"{mounts['config']}/tidegate.toml"]
    assert pod["securityContext"]["runAsUser"] == docker_uid() and pod["securityContext"]["runAsNonRoot"] is True
    assert pod["terminationGracePeriodSeconds"] > settings.shutdown_timeout
    labels = deployment["template"]["metadata"]["labels"]
    service = docs[("Service", "tidegate-cluster")]["spec"]
    assert service["selector"] == deployment["selector"]["matchLabels"] == labels
    assert service["ports"][0]["targetPort"] == port["name"]
    (rule,) = docs[("Ingress", "tidegate-cluster")]["spec"]["rules"]
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "tidegate-cluster", "port": {"name": service["ports"][0]["name"]}}
    # The engines' Services are where the settings point.
    db, s3 = urlsplit(settings.database_url), urlsplit(settings.s3_endpoint_url)
    assert docs[("Service", db.hostname)]["spec"]["ports"][0]["port"] == db.port
    assert docs[("Service", s3.hostname)]["spec"]["ports"][0]["port"] == s3.port
    (weed,) = docs[("StatefulSet", s3.hostname)]["spec"]["template"]["spec"]["containers"]
    assert _flag(weed["args"], "s3.port") == str(s3.port)
    assert settings.blob_store.startswith("s3://") and settings.local_cache_size < 10 * 1024 ** 3  # below sizeLimit
