"""The init container's model fetcher: `python -m deployer.kubernetes.fetchmodel --cache DIR --fetch URL DIR ...`

Runs in Ferry's runtime image before the server starts. Each URL goes through processors.fetch's
content-addressed cache (on a shared PVC when the cluster has `model_cache_pvc`: one download per cluster),
then is copied into the pod's emptyDir, which the server mounts read-only. A failure exits non-zero with the
URL and the cause on stderr and in the termination message, which Ferry shows as the instance's reason.

Every fetch goes through the same FetchPolicy (processors/fetch_policy.py) the control plane applies to its
own: a URL resolving to a loopback, link-local (the cloud's metadata address), private or reserved address is
refused unless `--allow-network` lists its network, on every redirect hop too; `--max-bytes` and
`--timeout-seconds` bound one fetch. The renderer passes the cluster's settings (volumes.fetch_policy_args).
A local path or file:// is never read here: on Kubernetes those are the node's paths, mounted as hostPath
volumes only under the roots a cluster's admin allows, never copied through the fetcher.
"""

from __future__ import annotations

import argparse
import ipaddress
import shutil
import sys
from pathlib import Path
from urllib.parse import urlparse

TERMINATION_LOG = Path("/dev/termination-log")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fetchmodel", description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True, help="directory of the content-addressed cache")
    parser.add_argument("--s3-endpoint", default=None, help="S3 API endpoint for s3:// and oss://")
    parser.add_argument("--fetch", nargs=2, action="append", metavar=("URL", "DIR"), default=[],
                        help="fetch URL into DIR (repeatable)")
    parser.add_argument("--allow-network", action="append", default=[], metavar="CIDR",
                        help="a non-public network sources may reach (repeatable; none by default)")
    parser.add_argument("--max-bytes", type=int, default=None, help="the most one fetch may download")
    parser.add_argument("--timeout-seconds", type=float, default=None, help="the longest one fetch may take")
    args = parser.parse_args(argv)
    from processors.fetch import ModelFetchError, fetch_model

    try:
        policy = fetch_policy(args)
    except ValueError as exc:
        _fail(f"fetchmodel: {exc}")
        return 2
    for url, target in args.fetch:
        if urlparse(url).scheme.lower() in ("", "file"):
            _fail(f"{url}: local paths are never fetched in a pod (a node path is a hostPath volume under the "
                  "cluster's host_path_roots)")
            return 1
        try:
            source = fetch_model(url, cache_dir=Path(args.cache), s3_endpoint=args.s3_endpoint, policy=policy)
            copy_tree(source, Path(target))
        except ModelFetchError as exc:
            _fail(f"{exc} (on Kubernetes: the cluster's settings fetch_allowed_networks, fetch_max_bytes, "
                  "fetch_timeout_seconds)")
            return 1
        print(f"Fetched {url} into {target}", flush=True)
    return 0


def fetch_policy(args: argparse.Namespace):
    """The policy of this pod's fetches; no file roots, so no local path is ever read through it."""
    from processors.fetch_policy import FetchPolicy

    for network in args.allow_network:
        ipaddress.ip_network(network, strict=False)  # a ValueError names the bad one
    if args.max_bytes is not None and args.max_bytes <= 0:
        raise ValueError(f"--max-bytes must be positive, not {args.max_bytes}")
    if args.timeout_seconds is not None and args.timeout_seconds <= 0:
        raise ValueError(f"--timeout-seconds must be positive, not {args.timeout_seconds:g}")
    return FetchPolicy.build(file_roots=(), forbidden_dirs=(), allowed_networks=args.allow_network,
                             max_bytes=args.max_bytes, timeout_seconds=args.timeout_seconds)


def copy_tree(source: Path, target: Path) -> None:
    """Copies what the cache holds for a URL (a directory of files) into `target`, which exists (a volume)."""
    target.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        destination = target / item.name
        if item.is_dir():
            shutil.copytree(item, destination, dirs_exist_ok=True)
        else:
            shutil.copyfile(item, destination)


def _fail(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
    try:
        TERMINATION_LOG.write_text(message[:4000])
    except OSError:
        pass  # not in a pod


if __name__ == "__main__":
    sys.exit(main())
