"""A real multi-node Ray cluster on one machine: each node a host of its own in a network
namespace, joined by veth pairs to a bridge, plus a real `mlflow server` in the head's
namespace.

Ray resolves 127.0.0.1 to the machine's routable address, so several `ray start` nodes cannot
share loopback; namespaces give each node its own address in a private /24 that only this
cluster uses (the bridge holds .1 so that the test process can read the MLflow server). Every
process and namespace is removed by `close()`, which the test fixture calls even when a test
fails. Processes are found with `ip netns pids`, never by name, so that nothing outside the
cluster is touched.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def namespaces_available() -> str | None:
    """None if this process may create network namespaces, else the reason it cannot."""
    if shutil.which("ip") is None:
        return "the `ip` tool (iproute2) is not installed"
    probe = f"tsprobe{os.getpid()}"
    result = _ip("netns", "add", probe, check=False)
    if result.returncode != 0:
        return f"cannot create network namespaces: {result.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


@dataclass
class NamespaceCluster:
    """Head (and MLflow server) in node 0's namespace, workers in the others."""

    workdir: Path
    nodes: int = 2
    cpus_per_node: int = 1
    tag: str = field(default_factory=lambda: secrets.token_hex(2))
    mlflow: subprocess.Popen | None = None
    token: str = field(default_factory=lambda: secrets.token_hex(32))

    def __post_init__(self) -> None:
        # 10.213.X.0/24 with X drawn per cluster: private, and unlikely to be in use here.
        self.subnet = f"10.213.{int(self.tag, 16) % 250 + 1}"
        self.bridge = f"tsbr{self.tag}"
        self.names = [f"ts{self.tag}n{i}" for i in range(self.nodes)]
        self.logs = self.workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        # Ray's socket paths must stay under 108 bytes: a short folder, not pytest's tmp_path.
        self.ray_tmp = Path(tempfile.mkdtemp(prefix="tsray", dir="/tmp"))
        self._created: list[str] = []

    # ---- addresses -----------------------------------------------------------------------------

    def ip(self, node: int) -> str:
        return f"{self.subnet}.{node + 2}"

    @property
    def head_address(self) -> str:
        return f"{self.ip(0)}:6379"

    @property
    def mlflow_uri(self) -> str:
        return f"http://{self.ip(0)}:5000"

    def env(self) -> dict[str, str]:
        """Environment of every Ray process and driver: the cluster's auth token, no
        developer settings leaking in, the test support package importable, and quick
        detection of a dead node."""
        # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER too: a local sweep earlier in this test process
        # set it to 0 (keep_local_ray_on_loopback), and a worker node would refuse to join.
        dropped = ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
        env = {k: v for k, v in os.environ.items() if k not in dropped}
        # The tests folder, so that Ray's workers can import support.faults.
        tests = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [tests, env.get("PYTHONPATH")]))
        env.update(
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN=self.token,
            RAY_health_check_period_ms="1000",
            RAY_health_check_timeout_ms="1000",
            RAY_health_check_failure_threshold="5",
            RAY_USAGE_STATS_ENABLED="0",
        )
        return env

    # ---- network -----------------------------------------------------------------------------

    def create_network(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        self._created.append("bridge")
        _ip("addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for node, name in enumerate(self.names):
            _ip("netns", "add", name)
            self._created.append(name)
            veth = f"tsv{self.tag}{node}"
            _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name)
            _ip("link", "set", veth, "master", self.bridge, "up")
            _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
            _ip("netns", "exec", name, "ip", "link", "set", "eth0", "up")
            _ip("netns", "exec", name, "ip", "addr", "add", f"{self.ip(node)}/24", "dev", "eth0")

    def run(self, node: int, *command: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ip", "netns", "exec", self.names[node], *command],
            env=self.env(), capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def popen(self, node: int, *command: str, log: str) -> subprocess.Popen:
        handle = (self.logs / log).open("w")
        return subprocess.Popen(
            ["ip", "netns", "exec", self.names[node], *command],
            env=self.env(), stdout=handle, stderr=subprocess.STDOUT, cwd=self.workdir,
        )  # fmt: skip

    # ---- Ray and MLflow ----------------------------------------------------------------------

    def start_ray(self) -> None:
        common = ["--num-cpus", str(self.cpus_per_node), "--object-store-memory", "200000000",
                  "--disable-usage-stats"]  # fmt: skip
        head = self.run(0, str(BIN / "ray"), "start", "--head", "--port", "6379",
                        "--node-ip-address", self.ip(0), "--include-dashboard", "false",
                        "--temp-dir", str(self.ray_tmp), *common)  # fmt: skip
        assert head.returncode == 0, head.stdout + head.stderr
        for node in range(1, self.nodes):
            self.start_worker(node)
        self.wait_for_nodes(self.nodes)

    def start_worker(self, node: int) -> None:
        worker = self.run(node, str(BIN / "ray"), "start", "--address", self.head_address,
                          "--node-ip-address", self.ip(node), "--num-cpus",
                          str(self.cpus_per_node), "--object-store-memory", "200000000",
                          "--disable-usage-stats")  # fmt: skip
        assert worker.returncode == 0, worker.stdout + worker.stderr

    def alive_nodes(self) -> list[str]:
        """IPs of the nodes the head sees alive (asked from inside the head's namespace)."""
        # An explicit address: 'auto' reads /tmp/ray/ray_current_cluster, which every Ray on
        # this machine shares.
        script = (
            f"import ray; ray.init(address='{self.head_address}', log_to_driver=False); "
            "print(','.join(n['NodeManagerAddress'] for n in ray.nodes() if n['Alive']))"
        )
        result = self.run(0, sys.executable, "-c", script)
        assert result.returncode == 0, result.stderr[-2000:]
        return [ip for ip in result.stdout.strip().splitlines()[-1].split(",") if ip]

    def wait_for_nodes(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.alive_nodes()) != count:
            assert time.monotonic() < deadline, f"expected {count} alive Ray nodes"
            time.sleep(1)

    def start_mlflow(self) -> None:
        store = self.workdir / "mlflow"
        store.mkdir(exist_ok=True)
        self.mlflow = self.popen(
            0, str(BIN / "mlflow"), "server", "--host", self.ip(0), "--port", "5000",
            "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
            "--artifacts-destination", str(store / "artifacts"), "--workers", "1",
            log="mlflow.log",
        )  # fmt: skip
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{self.mlflow_uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            assert self.mlflow.poll() is None, (self.logs / "mlflow.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "mlflow server did not come up"
            time.sleep(0.5)

    def stop_mlflow(self) -> None:
        if self.mlflow is not None and self.mlflow.poll() is None:
            # The server's process group: `mlflow server` runs uvicorn workers as children.
            self._kill_tree(self.mlflow.pid)
            self.mlflow.wait(timeout=30)
        self.mlflow = None

    def kill_node(self, node: int) -> None:
        """Kill every process of a node, as a machine that dies would (SIGKILL)."""
        for pid in self.pids(node):
            _signal(pid, signal.SIGKILL)

    def pids(self, node: int) -> list[int]:
        result = _ip("netns", "pids", self.names[node], check=False)
        return [int(pid) for pid in result.stdout.split()]

    @staticmethod
    def _kill_tree(pid: int) -> None:
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
        for child in children.stdout.split():
            NamespaceCluster._kill_tree(int(child))
        _signal(pid, signal.SIGKILL)

    # ---- teardown ------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every process in the cluster's namespaces and remove them and the bridge."""
        self.stop_mlflow()
        for node, name in enumerate(self.names):
            if name not in self._created:
                continue
            for _ in range(3):  # processes may fork while we kill
                pids = self.pids(node)
                if not pids:
                    break
                for pid in pids:
                    _signal(pid, signal.SIGKILL)
                time.sleep(0.5)
            _ip("netns", "del", name, check=False)
        if "bridge" in self._created:
            _ip("link", "del", self.bridge, check=False)
        self._created.clear()
        shutil.rmtree(self.ray_tmp, ignore_errors=True)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
