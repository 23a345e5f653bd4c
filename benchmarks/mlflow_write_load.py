"""What an MLflow tracking server sustains under the write pattern of a sweep.

    python benchmarks/mlflow_write_load.py [--seconds 20] [--clients 1 4 8] [--out PATH]

Starts a real `mlflow server` on 127.0.0.1 (SQLite backend; the base figure for docs/scaling.md,
where a Postgres-backed server is the cluster setting), then from several client threads sends
what a sweep's driver sends per trial epoch: one `log_batch` with five metrics (val_acc,
val_loss, train_loss, train_acc, trial_seconds) to one of 64 open runs. Reports requests per
second and latency percentiles per client count, as a table and JSON.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parent.parent
METRICS = ("val_acc", "val_loss", "train_loss", "train_acc", "trial_seconds")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(folder: Path, port: int, workers: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
         "--port", str(port), "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
         "--artifacts-destination", str(folder / "artifacts"), "--workers", str(workers)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise RuntimeError("mlflow server did not start")


def load(uri: str, run_ids: list[str], clients: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client_loop(index: int) -> None:
        client = MlflowClient(tracking_uri=uri)
        step = 0
        mine = []
        while time.monotonic() < stop:
            run_id = run_ids[(index + step * clients) % len(run_ids)]
            stamp = int(time.time() * 1000)
            batch = [Metric(name, 0.5, stamp, step) for name in METRICS]
            started = time.perf_counter()
            client.log_batch(run_id, metrics=batch)
            mine.append(time.perf_counter() - started)
            step += 1
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(clients)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    ordered = sorted(latencies)
    return {
        "clients": clients,
        "requests": len(latencies),
        "requests_per_s": len(latencies) / elapsed,
        "metrics_per_s": len(latencies) * len(METRICS) / elapsed,
        "p50_ms": 1000 * statistics.median(ordered),
        "p95_ms": 1000 * ordered[int(0.95 * (len(ordered) - 1))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--workers", type=int, default=2, help="mlflow server workers")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks/results/mlflow_write_load.json"
    )
    args = parser.parse_args()
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="mlflow-load-") as folder:
        server = start_server(Path(folder), port, args.workers)
        try:
            client = MlflowClient(tracking_uri=uri)
            experiment = client.create_experiment("load")
            run_ids = [client.create_run(experiment).info.run_id for _ in range(64)]
            rows = [load(uri, run_ids, clients, args.seconds) for clients in args.clients]
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"{'clients':>8}{'requests/s':>12}{'metrics/s':>11}{'p50 ms':>9}{'p95 ms':>9}")
    for row in rows:
        print(f"{row['clients']:>8}{row['requests_per_s']:>12.1f}{row['metrics_per_s']:>11.0f}"
              f"{row['p50_ms']:>9.1f}{row['p95_ms']:>9.1f}")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"backend": "sqlite", "server_workers": args.workers, "rows": rows,
              "date": time.strftime("%Y-%m-%d %H:%M:%S")}  # fmt: skip
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
