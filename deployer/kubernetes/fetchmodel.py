"""The init container's model fetcher: `python -m deployer.kubernetes.fetchmodel --cache DIR --fetch URL DIR ...`

Runs in Ferry's runtime image before the server starts. Each URL goes through processors.fetch's
content-addressed cache (on a shared PVC when the cluster has `model_cache_pvc`: one download per cluster),
then is copied into the pod's emptyDir, which the server mounts read-only. A failure exits non-zero with the
URL and the cause on stderr and in the termination message, which Ferry shows as the instance's reason.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

TERMINATION_LOG = Path("/dev/termination-log")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fetchmodel", description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True, help="directory of the content-addressed cache")
    parser.add_argument("--s3-endpoint", default=None, help="S3 API endpoint for s3:// and oss://")
    parser.add_argument("--fetch", nargs=2, action="append", metavar=("URL", "DIR"), default=[],
                        help="fetch URL into DIR (repeatable)")
    args = parser.parse_args(argv)
    from processors.fetch import ModelFetchError, fetch_model

    for url, target in args.fetch:
        try:
            source = fetch_model(url, cache_dir=Path(args.cache), s3_endpoint=args.s3_endpoint)
            copy_tree(source, Path(target))
        except ModelFetchError as exc:
            _fail(str(exc))
            return 1
        print(f"Fetched {url} into {target}", flush=True)
    return 0


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
