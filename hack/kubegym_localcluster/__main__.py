"""``python -m kubegym_localcluster``: up, down, status, kubeconfig, node, logs, evict, gpus."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

from . import layout


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kubegym-local", description="The local Kubernetes cluster of kubegym.")
    p.add_argument(
        "--state", type=Path, default=None, help="state directory (default: $KUBEGYM_STATE or <repo>/.state)"
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("up", help="start etcd, the control plane, the local node and MinIO")
    sub.add_parser("down", help="stop every process of the state directory")
    sub.add_parser("status", help="which components run")
    sub.add_parser("kubeconfig", help="print the admin kubeconfig's path")
    sub.add_parser("env", help="print shell exports: KUBECONFIG, S3 endpoint and credentials")
    sub.add_parser("node", help="run the local node in the foreground (started by 'up')")
    lg = sub.add_parser("logs", help="print a container's log from the node's files")
    lg.add_argument("pod")
    lg.add_argument("-n", "--namespace", default="default")
    lg.add_argument("-c", "--container", default=None)
    ev = sub.add_parser("evict", help="evict a pod the way a kubelet does (DisruptionTarget)")
    ev.add_argument("pod")
    ev.add_argument("-n", "--namespace", default="default")
    ev.add_argument("--message", default="The node was low on resource: memory.")
    gp = sub.add_parser("gpus", help="set the nvidia.com/gpu count the node advertises")
    gp.add_argument("count", type=int)
    args = p.parse_args(argv)
    state = (args.state or layout.state_dir()).resolve()

    if args.cmd == "kubeconfig":
        print(state / "kubeconfig")
        return 0
    if args.cmd == "node":
        from .node.agent import NodeAgent

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        agent = NodeAgent(state)

        def _stop(signum: int, frame: object) -> None:
            agent.stop()
            sys.exit(0)

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        agent.run()
        return 0
    if args.cmd == "gpus":
        from .node.agent import NodeConfig

        NodeConfig(state / "node" / "config.json").write(gpus=args.count)
        return 0

    from .cluster import LocalCluster

    cluster = LocalCluster(state)
    if args.cmd == "up":
        cluster.up()
    elif args.cmd == "down":
        cluster.down()
    elif args.cmd == "status":
        print(json.dumps(cluster.status(), indent=2))
    elif args.cmd == "env":
        creds = cluster.minio().credentials()
        print(f"export KUBECONFIG={state / 'kubeconfig'}")
        print(f"export AWS_ENDPOINT_URL={creds['endpoint']}")
        print(f"export AWS_ACCESS_KEY_ID={creds['access_key']}")
        print(f"export AWS_SECRET_ACCESS_KEY={creds['secret_key']}")
    elif args.cmd == "logs":
        return _logs(state, args.namespace, args.pod, args.container)
    elif args.cmd == "evict":
        kube = cluster.admin()
        from .node.agent import EVICT_ANNOTATION

        kube.merge_patch(
            f"/api/v1/namespaces/{args.namespace}/pods/{args.pod}",
            {"metadata": {"annotations": {EVICT_ANNOTATION: args.message}}},
        )
    return 0


def _logs(state: Path, namespace: str, pod: str, container: str | None) -> int:
    from .cluster import LocalCluster

    kube = LocalCluster(state).admin()
    obj = kube.get(f"/api/v1/namespaces/{namespace}/pods/{pod}")
    name = container or obj["spec"]["containers"][0]["name"]
    logs = sorted(
        (state / "node" / "pods" / obj["metadata"]["uid"] / "logs").glob(f"{name}-*.log"),
        key=lambda f: int(f.stem.rsplit("-", 1)[1]),
    )
    if not logs:
        print(f"no logs for container {name} of {namespace}/{pod}", file=sys.stderr)
        return 1
    sys.stdout.write(logs[-1].read_text(errors="replace"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
