"""Model fetching into a content-addressed cache shared by instances.

`fetch_model(url, cache_dir=...)` returns a local directory holding what `url`
names: the file (under its own name), or every object under a prefix that
ends with "/". Schemes: an absolute path or file:// (a directory is used in
place; a file is copied into the cache), http(s)://, s3:// and oss:// (both
spoken as the S3 protocol; oss:// is Alibaba OSS's S3-compatible API).

Cache layout under cache_dir:
    sha256/<hex>             one file per distinct content (read-only)
    trees/<hex>/<name>...    what a URL holds, as hard links to those files;
                             <hex> hashes the names and contents, so equal
                             models share one tree
    index/<key>.json         per URL: the files last fetched and their
                             validators (ETag, Last-Modified, size, mtime)
    locks/<key>.lock, tmp/   fetch locks; downloads in progress

Downloads go to tmp/ (same filesystem), are hashed while written and renamed
into place only when complete, so a failed or partial download never reaches
an instance. Fetches of one URL hold an fcntl lock, so concurrent fetches (threads
or processes) download once; a later fetch revalidates with the stored
validators (a conditional GET, a HEAD/LIST on S3, a stat) and downloads nothing
when the source is unchanged.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

from .fetch_policy import FetchPolicy, SourceRefused

CHUNK_BYTES = 1 << 20
ANONYMOUS = "anonymous"  # s3_credentials: unsigned requests, for public buckets
HTTP_TIMEOUT_SECONDS = (10, 300)  # connect, and between two reads
Progress = Callable[[int, "int | None"], None]


class ModelFetchError(Exception):
    """The model could not be fetched; the message names the URL and the cause."""


class _CutShort(Exception):
    """A download ended before all its bytes came."""


def fetch_model(
    url: str,
    *,
    cache_dir: Path,
    s3_endpoint: str | None = None,
    on_progress: Progress | None = None,
    policy: FetchPolicy | None = None,
    s3_credentials: tuple[str, str] | str | None = None,
) -> Path:
    """A local directory holding the model that `url` names (see module doc).

    `s3_endpoint` (else env FERRY_S3_ENDPOINT_URL) is the S3 API endpoint for
    s3:// and oss://; `on_progress(done_bytes, total_bytes or None)` is called
    as downloads advance. `policy` (processors/fetch_policy.py) limits what may be read and how much; the
    control plane always passes one, None is for a fetch inside a model's own pod. `s3_credentials`: an (access
    key id, secret) pair, ANONYMOUS for unsigned requests, or None for the platform's (env FERRY_S3_ACCESS_KEY_ID,
    FERRY_S3_SECRET_ACCESS_KEY, else boto's own lookup). Raises ModelFetchError.
    """
    try:
        return _fetch(url, cache_dir=cache_dir, s3_endpoint=s3_endpoint, on_progress=on_progress,
                      policy=policy.started_now() if policy else None, s3_credentials=s3_credentials)
    except SourceRefused as exc:
        raise ModelFetchError(f"{url}: {exc}") from None


def _fetch(url: str, *, cache_dir: Path, s3_endpoint: str | None, on_progress: Progress | None,
           policy: FetchPolicy | None, s3_credentials) -> Path:
    cache = Cache(Path(cache_dir))
    scheme = urlparse(url).scheme
    if scheme in ("", "file"):
        path = Path(unquote(urlparse(url).path) if scheme == "file" else url)
        if not path.is_absolute():
            raise ModelFetchError(f"{url}: a local model path must be absolute")
        if policy is not None:
            path = policy.check_local(path)  # the real path, read from here on: no second resolution
        if path.is_dir():
            return path  # a local directory is used where it is
        fetch_files = lambda old: _local_files(url, path, cache, old, on_progress, policy)  # noqa: E731
    elif scheme in ("http", "https"):
        fetch_files = lambda old: _http_files(url, cache, old, on_progress, policy)  # noqa: E731
    elif scheme in ("s3", "oss"):
        endpoint = s3_endpoint or os.environ.get("FERRY_S3_ENDPOINT_URL") or None
        if policy is not None and s3_endpoint:
            policy.check_endpoint(s3_endpoint)
        fetch_files = lambda old: _s3_files(url, endpoint, cache, old, on_progress, policy,  # noqa: E731
                                                  s3_credentials)
    else:
        raise ModelFetchError(f"{url}: unsupported scheme; use a path, file://, http(s)://, s3:// or oss://")
    key = hashlib.sha256(f"{url}\n{s3_endpoint or ''}".encode()).hexdigest()
    with cache.locked(key):
        old_files = cache.read_index(key)
        files = fetch_files(old_files)
        tree = cache.tree(files)
        cache.write_index(key, url, files)
    return tree


class Cache:
    def __init__(self, root: Path):
        self.root = root
        for folder in ("sha256", "trees", "index", "locks", "tmp"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        # Sandboxed instances run as users of their own and read their model through trees/<digest>/: it must
        # be searchable whatever the umask (`make run` sets 077). Not listable: one tree's name is no one else's.
        with contextlib.suppress(PermissionError):  # a cache directory of another owner keeps its modes
            os.chmod(root, 0o711)
            os.chmod(root / "trees", 0o711)

    @contextlib.contextmanager
    def locked(self, key: str) -> Iterator[None]:
        with open(self.root / "locks" / f"{key}.lock", "w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)  # released when the file closes
            yield

    def blob(self, digest: str) -> Path:
        return self.root / "sha256" / digest

    def has_all(self, files: dict) -> bool:
        return all(self.blob(entry["digest"]).is_file() for entry in files.values())

    def store(self, chunks: Iterable[bytes], expected_size: int | None, progress: Callable[[int], None]) -> str:
        """Write `chunks` to a temporary file, hashing them; move it into place
        only when complete (and of `expected_size`, when known). Returns the digest."""
        handle, temporary = tempfile.mkstemp(dir=self.root / "tmp", prefix="download-")
        try:
            digest, size = hashlib.sha256(), 0
            with os.fdopen(handle, "wb") as file:
                for chunk in chunks:
                    file.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    progress(len(chunk))
                file.flush()
                os.fsync(file.fileno())
            if expected_size is not None and size != expected_size:
                raise _CutShort(f"the transfer was cut short: got {size} bytes of {expected_size}")
            os.chmod(temporary, 0o444)  # instances share these files: nobody edits one in place
            os.replace(temporary, self.blob(digest.hexdigest()))
            return digest.hexdigest()
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)

    def tree(self, files: dict) -> Path:
        """The directory holding `files` ({relative path: {"digest": ...}}), made once."""
        listing = json.dumps({name: entry["digest"] for name, entry in sorted(files.items())})
        final = self.root / "trees" / hashlib.sha256(listing.encode()).hexdigest()
        if final.is_dir():
            return final
        building = Path(tempfile.mkdtemp(dir=self.root / "tmp", prefix="tree-"))
        for name, entry in files.items():
            target = building / name
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(self.blob(entry["digest"]), target)
            except OSError:  # a filesystem without hard links
                shutil.copy2(self.blob(entry["digest"]), target)
        for directory in [building, *(path for path in building.rglob("*") if path.is_dir())]:
            os.chmod(directory, 0o755)  # made under the process's umask; instances of other users read them
        try:
            os.rename(building, final)
        except OSError:  # another fetch made the same tree first
            shutil.rmtree(building, ignore_errors=True)
        return final

    def read_index(self, key: str) -> dict:
        try:
            files = json.loads((self.root / "index" / f"{key}.json").read_text())["files"]
        except (OSError, ValueError, KeyError):
            return {}
        return files if self.has_all(files) else {}  # blobs removed by hand: fetch again

    def write_index(self, key: str, url: str, files: dict) -> None:
        handle, temporary = tempfile.mkstemp(dir=self.root / "tmp", prefix="index-")
        with os.fdopen(handle, "w") as file:
            json.dump({"url": url, "files": files}, file, indent=1)
        os.replace(temporary, self.root / "index" / f"{key}.json")


class _Counter:
    """Adds up bytes across the files of one fetch for on_progress."""

    def __init__(self, total: int | None, on_progress: Progress | None):
        self.done, self.total, self.on_progress = 0, total, on_progress

    def __call__(self, count: int) -> None:
        self.done += count
        if self.on_progress:
            self.on_progress(self.done, self.total)


def _file_name(url: str) -> str:
    name = unquote(urlparse(url).path.rstrip("/").rsplit("/", 1)[-1])
    return name if name not in ("", ".", "..") else "model"


def _safe_relative(url: str, relative: str) -> str:
    parts = [part for part in relative.split("/") if part]
    if not parts or any(part in (".", "..") for part in parts):
        raise ModelFetchError(f"{url}: refusing the object name {relative!r}, which leaves the model directory")
    return "/".join(parts)


def _read_chunks(file) -> Iterator[bytes]:
    while chunk := file.read(CHUNK_BYTES):
        yield chunk


# -- local files ------------------------------------------------------------------------------------------


def _local_files(url: str, path: Path, cache: Cache, old: dict, on_progress: Progress | None,
                 policy: FetchPolicy | None) -> dict:
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise ModelFetchError(f"{url}: no such file or directory") from None
    except OSError as error:
        raise ModelFetchError(f"{url}: {error.strerror}") from error
    if policy is not None:
        policy.check_size(stat.st_size)
    validators = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "inode": stat.st_ino}
    entry = old.get(path.name)
    if entry and all(entry.get(name) == value for name, value in validators.items()):
        return old
    try:
        with open(path, "rb") as file:
            chunks = policy.guarded(_read_chunks(file)) if policy else _read_chunks(file)
            digest = cache.store(chunks, stat.st_size, _Counter(stat.st_size, on_progress))
    except (OSError, _CutShort) as error:  # unreadable, or changed while we copied it
        raise ModelFetchError(f"{url}: {getattr(error, 'strerror', None) or error}") from error
    return {path.name: {"digest": digest, **validators}}


# -- http(s) ------------------------------------------------------------------------------------------------


def _http_files(url: str, cache: Cache, old: dict, on_progress: Progress | None, policy: FetchPolicy | None) -> dict:
    import requests
    import urllib3

    name = _file_name(url)
    entry = old.get(name)
    conditions = {}
    if entry and entry.get("etag"):
        conditions["If-None-Match"] = entry["etag"]
    if entry and entry.get("last_modified"):
        conditions["If-Modified-Since"] = entry["last_modified"]
    client = policy.http_session() if policy else requests
    timeout = (HTTP_TIMEOUT_SECONDS[0], policy.read_timeout()) if policy else HTTP_TIMEOUT_SECONDS
    try:
        with client.get(url, headers=conditions, stream=True, timeout=timeout) as response:
            if response.status_code == 304 and entry:
                return old
            if response.status_code != 200:
                # Only the status: a reason phrase or body of some internal server is not Ferry's to repeat.
                raise ModelFetchError(f"{url}: the server answered {response.status_code}")
            length = response.headers.get("Content-Length")
            validators = {
                "etag": response.headers.get("ETag"),
                "last_modified": response.headers.get("Last-Modified"),
                "size": int(length) if length and length.isdigit() else None,
            }
            if entry and _unchanged(entry, validators):  # a server that ignores conditional requests
                return old
            counter = _Counter(validators["size"], on_progress)
            if policy is None:
                chunks = response.iter_content(CHUNK_BYTES)
            else:
                if validators["size"] is not None:
                    policy.check_size(validators["size"])
                chunks = policy.guarded(_available_chunks(response.raw))
            digest = cache.store(chunks, validators["size"], counter)
    except (requests.RequestException, urllib3.exceptions.HTTPError) as error:
        if policy is not None:
            policy.check_time()  # a read that timed out because the fetch's time was up says so
        raise ModelFetchError(f"{url}: {_http_cause(error)}") from error
    except _CutShort as error:
        raise ModelFetchError(f"{url}: {error}") from error
    return {name: {"digest": digest, **validators}}


def _available_chunks(raw) -> Iterator[bytes]:
    """What has arrived, as it arrives: a server sending a byte at a time cannot hold one read past the time
    limit, as a read of a full chunk would."""
    while chunk := raw.read1(CHUNK_BYTES, decode_content=True):
        yield chunk


def _unchanged(entry: dict, validators: dict) -> bool:
    if entry.get("etag") and validators["etag"]:
        return entry["etag"] == validators["etag"]
    return bool(validators["last_modified"]) and (entry.get("last_modified"), entry.get("size")) == (
        validators["last_modified"], validators["size"])


def _http_cause(error: Exception) -> str:
    """A cause in Ferry's words: the library's message can carry addresses and hosts met along redirects."""
    import requests
    import urllib3

    if isinstance(error, requests.ConnectionError) and "refused" in str(error).lower():
        return "connection refused"
    if isinstance(error, (requests.Timeout, urllib3.exceptions.TimeoutError)):
        return "timed out"
    if isinstance(error, requests.TooManyRedirects):
        return "too many redirects"
    if isinstance(error, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError,
                          urllib3.exceptions.ProtocolError)):
        return "the connection broke during the download"
    if isinstance(error, requests.exceptions.InvalidSchema):
        return "a redirect led to a URL that is not http(s)"
    return f"the request failed ({type(error).__name__})"


# -- s3:// and oss:// ---------------------------------------------------------------------------------------


def _s3_files(url: str, endpoint: str | None, cache: Cache, old: dict, on_progress: Progress | None,
              policy: FetchPolicy | None, credentials=None) -> dict:
    import botocore.exceptions

    parsed = urlparse(url)
    bucket, key = parsed.netloc, unquote(parsed.path.lstrip("/"))
    if not bucket:
        raise ModelFetchError(f"{url}: no bucket in the URL")
    try:
        # Listed and checked with these credentials at every fetch, even when the cache holds the files: a copy
        # another project fetched is never handed to one that may not read the bucket.
        client = _s3_client(endpoint, credentials)
        objects = _s3_objects(client, url, bucket, key)
        files = {relative: old[relative] for relative, item in objects.items() if _same_object(old.get(relative), item)}
        missing = {relative: item for relative, item in objects.items() if relative not in files}
        counter = _Counter(sum(item["size"] for item in missing.values()), on_progress)
        if policy is not None:
            policy.check_size(sum(item["size"] for item in objects.values()))
        for relative, item in missing.items():
            body = client.get_object(Bucket=bucket, Key=item["key"])["Body"]
            chunks = policy.guarded(body.iter_chunks(CHUNK_BYTES), counter.done) if policy else body.iter_chunks(
                CHUNK_BYTES)
            digest = cache.store(chunks, item["size"], counter)
            files[relative] = {"digest": digest, "etag": item["etag"], "size": item["size"]}
        return files
    except botocore.exceptions.ClientError as error:
        raise ModelFetchError(f"{url}: {_s3_cause(error, bucket)}") from error
    except botocore.exceptions.NoCredentialsError:
        raise ModelFetchError(
            f"{url}: no S3 credentials: set FERRY_S3_ACCESS_KEY_ID and FERRY_S3_SECRET_ACCESS_KEY "
            "(or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        ) from None
    except botocore.exceptions.EndpointConnectionError as error:
        raise ModelFetchError(f"{url}: cannot connect to the S3 endpoint {error.kwargs.get('endpoint_url')}") from error
    except (botocore.exceptions.BotoCoreError, OSError) as error:
        raise ModelFetchError(f"{url}: {type(error).__name__}: {error}") from error
    except _CutShort as error:
        raise ModelFetchError(f"{url}: {error}") from error


def _same_object(entry: dict | None, item: dict) -> bool:
    return bool(entry) and (entry.get("etag"), entry.get("size")) == (item["etag"], item["size"])


def _s3_client(endpoint: str | None, credentials=None):
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    # Path-style addressing works with any S3-compatible server (MinIO, Ceph, moto) on any host name;
    # Alibaba OSS wants FERRY_S3_ADDRESSING_STYLE=virtual.
    style = os.environ.get("FERRY_S3_ADDRESSING_STYLE", "path")
    config = Config(s3={"addressing_style": style}, retries={"max_attempts": 3, "mode": "standard"},
                    **({"signature_version": UNSIGNED} if credentials == ANONYMOUS else {}))
    if credentials is None:
        key_id, secret = os.environ.get("FERRY_S3_ACCESS_KEY_ID"), os.environ.get("FERRY_S3_SECRET_ACCESS_KEY")
    elif credentials == ANONYMOUS:
        key_id = secret = None
    else:
        key_id, secret = credentials
    # Given credentials or UNSIGNED: boto never falls back to the host's (environment, ~/.aws, instance role).
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key_id or None,
        aws_secret_access_key=secret or None,
        region_name=os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1",
        config=config,
    )


def _s3_objects(client, url: str, bucket: str, key: str) -> dict:
    """{relative path: {"key", "etag", "size"}}: one object, or all under a prefix.
    A key without a trailing "/" that names no object is tried as a prefix."""
    import botocore.exceptions

    if key and not key.endswith("/"):
        try:
            head = client.head_object(Bucket=bucket, Key=key)
            return {_file_name(url): {"key": key, "etag": head["ETag"], "size": head["ContentLength"]}}
        except botocore.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise
        objects = _s3_listing(client, url, bucket, key + "/")
        if not objects:
            _check_bucket(client, bucket)
            raise ModelFetchError(f"{url}: no such object (nor objects under {key}/)")
        return objects
    objects = _s3_listing(client, url, bucket, key)
    if not objects:
        raise ModelFetchError(f"{url}: no objects under this prefix")
    return objects


def _s3_listing(client, url: str, bucket: str, prefix: str) -> dict:
    objects = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if item["Key"].endswith("/"):
                continue  # a "folder" marker, not a file
            relative = _safe_relative(url, item["Key"][len(prefix):])
            objects[relative] = {"key": item["Key"], "etag": item["ETag"], "size": item["Size"]}
    return objects


def _check_bucket(client, bucket: str) -> None:
    client.head_bucket(Bucket=bucket)  # raises ClientError 404 for a missing bucket


def _s3_cause(error, bucket: str) -> str:
    details = error.response.get("Error", {})
    code, status = details.get("Code", ""), error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code == "NoSuchBucket" or (code in ("404", "NotFound") and error.operation_name == "HeadBucket"):
        return f"no such bucket {bucket}"
    if code in ("NoSuchKey", "404", "NotFound"):
        return "no such object"
    if code in ("AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return f"access denied ({code}): check the S3 credentials and the bucket's policy"
    return f"the S3 server answered {status} {code}: {details.get('Message', '')}".rstrip(": ")
