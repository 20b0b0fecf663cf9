"""``kubectl gym`` (the ``kubectl-gym`` executable on PATH): kubegym's kubectl plugin.

    kubectl gym compare BENCHMARK [-n NAMESPACE] [-o table|json]
    kubectl gym report EXPERIMENT [-n NAMESPACE] [-o table|json] [--dir DIR] [--no-download]
    kubectl gym upload MODEL.zip [--bucket B] [--prefix P] [--endpoint URL] [--algorithm A]
                                 [--vecnormalize STATS.pkl]
    kubectl gym status NAME [-n NAMESPACE]          (a TrainingRun, Experiment or Benchmark)
    kubectl gym watch NAME [-n NAMESPACE] [--interval S]
    kubectl gym logs RUN [-n NAMESPACE] [-f] [--previous] [--endpoint URL]
    kubectl gym download RUN [-n NAMESPACE] [--dir DIR] [--endpoint URL]
    kubectl gym tensorboard NAME [-n NAMESPACE] [--port P] [--dir DIR] [--sync-only] [--endpoint URL]

Exit codes: 0 done; 1 the request failed (not found, forbidden, storage error); 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kubegym_cli import compare, download, logs, report, status, tensorboard
from kubegym_cli.connect import connect as _kube
from kubegym_cli.errors import CliError
from kubegym_cli.upload import UploadError, upload

GROUP, VERSION, BENCHMARKS = "kubegym.io", "v1alpha1", "benchmarks"


def _compare(args: argparse.Namespace) -> int:
    from kubernetes.client.exceptions import ApiException

    api, default_namespace = _kube(args.kubeconfig, args.context)
    namespace = args.namespace or default_namespace
    try:
        bench = api.get_namespaced_custom_object(GROUP, VERSION, namespace, BENCHMARKS, args.benchmark)
    except ApiException as e:
        if e.status == 404:
            print(f'Error: benchmark "{args.benchmark}" not found in namespace {namespace}', file=sys.stderr)
        else:
            print(f"Error: cannot get benchmark {namespace}/{args.benchmark}: {e.status} {e.reason}", file=sys.stderr)
        return 1
    print(compare.render_json(bench) if args.output == "json" else compare.render_table(bench))
    return 0


def _upload(args: argparse.Namespace) -> int:
    try:
        done = upload(
            Path(args.model),
            bucket=args.bucket,
            prefix=args.prefix,
            endpoint=args.endpoint,
            algorithm=args.algorithm,
            vecnormalize=Path(args.vecnormalize) if args.vecnormalize else None,
        )
    except UploadError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    print(done.uri)
    hint = (
        f"algorithm: {done.algorithm}" if done.algorithm else "algorithm: <PPO, DQN, ...>  # required: no --algorithm"
    )
    print(f"# in a Benchmark:\n#   models:\n#   - name: my-model\n#     uri: {done.uri}\n#     {hint}", file=sys.stderr)
    return 0


def _report(args: argparse.Namespace) -> int:
    api, namespace = _kube(args.kubeconfig, args.context)
    return report.run(args, api, namespace)


def _researcher(command: Callable[[argparse.Namespace, Any, str], int]) -> Callable[[argparse.Namespace], int]:
    """A handler for status, watch, logs, download and tensorboard: connected, and every failure one line, exit 1."""

    def handler(args: argparse.Namespace) -> int:
        import urllib3
        from kubernetes.config.config_exception import ConfigException

        try:
            api, namespace = _kube(args.kubeconfig, args.context)
            return command(args, api, namespace)
        except CliError as e:
            print(f"Error: {e}", file=sys.stderr)
        except ConfigException as e:
            print(f"Error: no usable kubeconfig: {' '.join(str(e).split())}", file=sys.stderr)
        except urllib3.exceptions.HTTPError as e:
            print(f"Error: cannot reach the Kubernetes API server: {type(e).__name__}", file=sys.stderr)
        except KeyboardInterrupt:
            return 130
        return 1

    return handler


def _logs(args: argparse.Namespace, api: Any, namespace: str) -> int:
    from kubernetes import client

    return logs.run(args, api, client.CoreV1Api(), namespace)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubectl gym", description="kubegym's kubectl plugin.")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")
    commands = parser.add_subparsers(dest="command", required=True)
    cmp = commands.add_parser("compare", help="a Benchmark's ranking and statistics")
    cmp.add_argument("benchmark", help="name of the Benchmark")
    cmp.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    cmp.add_argument("-o", "--output", choices=("table", "json"), default="table")
    cmp.set_defaults(handler=_compare)
    up = commands.add_parser("upload", help="upload a local model.zip to S3 and print its URI")
    up.add_argument("model", help="a stable-baselines3 model archive (.zip)")
    up.add_argument("--bucket", help="bucket (default: $KUBEGYM_BUCKET)")
    up.add_argument("--prefix", default="uploads", help="key prefix (default: uploads)")
    up.add_argument("--endpoint", help="S3 endpoint URL (default: $AWS_ENDPOINT_URL, else AWS S3)")
    up.add_argument("--algorithm", help="algorithm that saved it (PPO, DQN, ...): written to manifest.json")
    up.add_argument("--vecnormalize", help="VecNormalize statistics saved with the model")
    up.set_defaults(handler=_upload)
    report.add_parser(commands, _report)
    status.add_parsers(commands, _researcher(status.run))
    logs.add_parser(commands, _researcher(_logs))
    download.add_parser(commands, _researcher(download.run))
    tensorboard.add_parser(commands, _researcher(tensorboard.run))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
