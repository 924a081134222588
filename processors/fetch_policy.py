"""What a model fetch may reach, and how much and how long it may take.

Ferry fetches URLs that users write, from its own hosts; without limits a `model_path` could read Ferry's own
files (`file:///.../var/secret-key`), reach services only the host can (a cloud's metadata address, a database on
a private network; SSRF), or fill the disk and hold a worker for hours. A FetchPolicy says:

- file_roots: the directories file:// sources (and bare paths) must be under, after every symlink and `..`
  is resolved; forbidden_dirs (Ferry's var/) are refused even inside a root.
- allowed_networks: the non-public networks http(s) may reach. Every other address that is not global
  (loopback, link-local with 169.254.169.254, RFC 1918, fc00::/7, CGNAT, multicast, reserved, ...) is
  refused. The check is on the address actually connected to (the name is resolved once, checked, and the
  socket connects to that address, so DNS rebinding cannot swap it), and on every redirect hop.
- max_bytes, timeout_seconds: the most one fetch may download, and the longest it may take.

No Django here: deployer/launches.py builds the policy from settings.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from urllib3 import connection as urllib3_connection
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

MAX_REDIRECTS = 5
READ_TIMEOUT_SECONDS = 300  # between two reads; a fetch's own timeout bounds it further


class SourceRefused(Exception):
    """The policy refuses this source; the message says why without revealing what answered."""


@dataclass(frozen=True)
class FetchPolicy:
    file_roots: tuple[Path, ...] = ()
    forbidden_dirs: tuple[Path, ...] = ()
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    max_bytes: int | None = None
    timeout_seconds: float | None = None
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def build(cls, *, file_roots, forbidden_dirs, allowed_networks, max_bytes, timeout_seconds) -> FetchPolicy:
        return cls(file_roots=tuple(_real(Path(root)) for root in file_roots),
                   forbidden_dirs=tuple(_real(Path(folder)) for folder in forbidden_dirs),
                   allowed_networks=tuple(ipaddress.ip_network(net, strict=False) for net in allowed_networks),
                   max_bytes=max_bytes, timeout_seconds=timeout_seconds)

    def started_now(self) -> FetchPolicy:
        """The same policy with its clock starting now (one policy object per fetch)."""
        return FetchPolicy(self.file_roots, self.forbidden_dirs, self.allowed_networks, self.max_bytes,
                           self.timeout_seconds)

    # -- time and size ---------------------------------------------------------------------------------------

    def remaining_seconds(self) -> float | None:
        if self.timeout_seconds is None:
            return None
        return self.timeout_seconds - (time.monotonic() - self.started)

    def check_time(self) -> None:
        remaining = self.remaining_seconds()
        if remaining is not None and remaining <= 0:
            raise SourceRefused(f"the fetch took longer than the time limit of {self.timeout_seconds:g} s "
                                "(FERRY_FETCH_TIMEOUT_SECONDS)")

    def check_size(self, size: int) -> None:
        if self.max_bytes is not None and size > self.max_bytes:
            raise SourceRefused(f"the model is larger than the size limit of {_bytes(self.max_bytes)} "
                                "(FERRY_FETCH_MAX_BYTES)")

    def read_timeout(self) -> float:
        remaining = self.remaining_seconds()
        return READ_TIMEOUT_SECONDS if remaining is None else max(0.1, min(READ_TIMEOUT_SECONDS, remaining))

    def guarded(self, chunks, counted_before: int = 0):
        """`chunks` cut off, with an error naming the limit, once the fetch is too big or too slow."""
        total = counted_before
        for chunk in chunks:
            total += len(chunk)
            self.check_size(total)
            self.check_time()
            yield chunk

    # -- local files -----------------------------------------------------------------------------------------

    def check_local(self, path: Path) -> Path:
        """The real path of `path`, if it lies under a root and outside the forbidden directories; a
        directory's symlinks are followed and checked too (an instance would read through them)."""
        real = _real(path)
        self._check_real(real)
        if real.is_dir():
            for folder, dirs, files in os.walk(real):
                for name in dirs + files:
                    entry = Path(folder) / name
                    if entry.is_symlink():
                        self._check_real(_real(entry))
        return real

    def _check_real(self, real: Path) -> None:
        if any(_within(real, folder) or _within(folder, real) for folder in self.forbidden_dirs):
            raise SourceRefused("local paths inside Ferry's own data directory are never fetched")
        if not any(_within(real, root) for root in self.file_roots):
            raise SourceRefused("local paths must lie under one of the directories FERRY_FILE_SOURCE_ROOTS "
                                "lists (after resolving symlinks and ..)")

    # -- network ---------------------------------------------------------------------------------------------

    def check_address(self, address: str) -> None:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if getattr(ip, "ipv4_mapped", None):
            ip = ip.ipv4_mapped
        if any(ip in network for network in self.allowed_networks):
            return
        if not ip.is_global or ip.is_multicast:
            raise SourceRefused("the host resolves to a non-public address (loopback, link-local, private or "
                                "reserved), which sources may not reach unless FERRY_FETCH_ALLOWED_NETWORKS "
                                "allows it")

    def check_endpoint(self, endpoint: str) -> None:
        """An S3 endpoint a service file names: its host's addresses, checked before the S3 client connects
        (the S3 client resolves again; an admin's own endpoint, FERRY_S3_ENDPOINT_URL, is not checked)."""
        from urllib.parse import urlparse

        parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        try:
            candidates = socket.getaddrinfo(parsed.hostname or "", parsed.port or 443, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise SourceRefused(f"cannot resolve the S3 endpoint {parsed.hostname}") from exc
        for _, _, _, _, sockaddr in candidates:
            self.check_address(sockaddr[0])

    def http_session(self):
        """A requests session whose every connection, redirects included, goes through check_address."""
        import requests
        from requests.adapters import HTTPAdapter

        policy = self
        http_cls = type("GuardedHTTPConnection", (_GuardedConnection, HTTPConnection), {"policy": policy})
        https_cls = type("GuardedHTTPSConnection", (_GuardedConnection, HTTPSConnection), {"policy": policy})
        http_pool = type("GuardedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http_cls})
        https_pool = type("GuardedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https_cls})

        class GuardedAdapter(HTTPAdapter):
            def init_poolmanager(self, *args, **kwargs):
                super().init_poolmanager(*args, **kwargs)
                self.poolmanager.pool_classes_by_scheme = {"http": http_pool, "https": https_pool}

            def proxy_manager_for(self, proxy, **kwargs):
                raise SourceRefused("fetching through a proxy is not supported")  # the proxy would connect

        session = requests.Session()
        session.trust_env = False  # no proxy from the environment: the address checked is the one connected
        session.max_redirects = MAX_REDIRECTS
        session.mount("http://", GuardedAdapter())
        session.mount("https://", GuardedAdapter())
        return session


class _GuardedConnection:
    """Resolves the host once, refuses what the policy refuses, and connects to the very address checked."""

    policy: FetchPolicy

    def _new_conn(self):
        try:
            candidates = socket.getaddrinfo(self._dns_host, self.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise SourceRefused(f"cannot resolve the host {self.host}") from exc
        for _, _, _, _, sockaddr in candidates:
            self.policy.check_address(sockaddr[0])  # every address: a name with one refused one is refused
        error = None
        for _, _, _, _, sockaddr in candidates:
            try:
                sock = urllib3_connection.connection.create_connection(
                    (sockaddr[0], self.port), self.timeout, source_address=self.source_address,
                    socket_options=self.socket_options)
            except OSError as exc:
                error = exc
                continue
            sys.audit("http.client.connect", self, self.host, self.port)
            return sock
        raise SourceRefused(f"cannot connect to {self.host}") from error


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _bytes(count: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            return f"{count / size:g} {unit}"
    return f"{count} bytes"
