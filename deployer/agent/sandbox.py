"""The instance sandbox: what keeps user code from Ferry's secrets and from other instances.

Layers, each used when this host allows it (`decide`, a pure function, says which; `notes` says in the
instance log what is and is not isolated, so nothing is claimed that is not there):

- a user of its own: when the agent runs as root, every process gets a uid (and gid, no supplementary
  groups) of its own from a reserved range without /etc/passwd entries, as Kubernetes' user namespaces do.
  Files of other uids that are not world-readable, their /proc/<pid>/environ and signals are then out of
  reach by the kernel's ordinary checks;
- bubblewrap (Debian's `bubblewrap`): a mount namespace holding only the system's directories, the
  interpreter and the project's code (read-only), the model cache and the file-source roots (read-only;
  models used in place lie there), its own directory
  (read-write), a private /tmp and a /proc of its own pid namespace (it sees only its own processes), and
  its own IPC namespace. The network stays shared: the gateway reaches the instance on loopback. No
  --die-with-parent: instances outlive an agent restart and are adopted;
- its own directory `<var>/instances/<name>/work` (mode 0700; its HOME), and an environment holding only
  what it needs (launch.py), never the control plane's.

The command chain under bubblewrap: `limited_exec --ignore-stop` (bwrap's outer process must not die of the
SIGTERM the agent sends the process group, or the agent would take the instance for ended mid-drain)
-> bwrap -> `limited_exec --uid U --gid G --memory B` (restores the signals, drops to the instance's user
after bwrap, running as root, has built the mounts; sets the memory limit) -> the command.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import shutil
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

logger = logging.getLogger("ferry.agent")

# Reserved uids (and equal gids) for instance processes: far above the ranges distributions hand out to
# users (1000-60000) and to subordinate id maps (100000 + 65536 per user), below 2^31.
UID_BASE = 1_900_000_000
UID_SPAN = 1 << 24
WORK_DIR = "work"
# What of the host an instance sees under bubblewrap, read-only (absent ones are skipped).
SYSTEM_DIRS = ("/usr", "/etc", "/opt", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


@dataclass(frozen=True)
class Isolation:
    separate_user: bool  # a uid of its own (only root can give one)
    bwrap: str | None  # the bubblewrap executable when it is used
    why_not_user: str = ""
    why_not_bwrap: str = ""

    @property
    def active(self) -> bool:
        return self.separate_user or self.bwrap is not None


def decide(*, is_root: bool, bwrap: str | None, bwrap_works: bool, bwrap_error: str = "",
           reachable_by_others: bool = True) -> Isolation:
    """Which layers this host allows. Without bubblewrap a separate user must be able to reach the
    interpreter and the code by ordinary permissions (`reachable_by_others`); with it the mounts make them
    reachable."""
    use_bwrap = bwrap if bwrap and bwrap_works else None
    why_not_bwrap = ("" if use_bwrap else
                     f"bubblewrap does not work here ({bwrap_error})" if bwrap else "bubblewrap (bwrap) is not installed")
    if not is_root:
        return Isolation(False, use_bwrap, "the node agent does not run as root, so it cannot give a user of its own",
                         why_not_bwrap)
    if use_bwrap is None and not reachable_by_others:
        return Isolation(False, None, "without bubblewrap another user cannot reach the interpreter or the code "
                                      "(a parent directory is not searchable by others)", why_not_bwrap)
    return Isolation(True, use_bwrap, "", why_not_bwrap)


def notes(isolation: Isolation, uid: int | None) -> list[str]:
    """What is and is not isolated, for the instance log on every start."""
    lines = []
    if isolation.separate_user:
        lines.append(f"sandbox: runs as uid {uid} and gid {uid} of its own, without supplementary groups: "
                     "other instances' files, /proc/<pid>/environ and signals are out of its reach")
    else:
        lines.append(f"sandbox: NOT isolated by user: runs as Ferry's own uid {os.getuid()} ({isolation.why_not_user}); "
                     "it can signal other instances and read what Ferry's user can read"
                     + ("" if isolation.bwrap else ", including Ferry's var directory, the database and other "
                                                   "instances' environments under /proc"))
    if isolation.bwrap:
        lines.append("sandbox: bubblewrap: sees only system directories, the code and the model cache (read-only), "
                     "its own directory, a private /tmp, its own processes in /proc and its own IPC; Ferry's var "
                     "directory (secret key, admin token, database, other instances' logs) is not mounted")
    else:
        lines.append(f"sandbox: NO mount or pid namespace: {isolation.why_not_bwrap}; it sees this host's file "
                     "system and every process under /proc (their command lines)")
    lines.append("sandbox: not isolated: the network (the loopback is shared: other instances answer on their "
                 "ports, behind their service token; Redis and PostgreSQL ask for passwords), CPU time")
    return lines


def uid_for(name: str) -> int:
    """The uid of an instance spawned directly: stable per name (readable in `ps`)."""
    return UID_BASE + zlib.crc32(name.encode()) % UID_SPAN


def fresh_uid() -> int:
    """The uid of a warm pool standby: its instance is not known yet; the instance's directory is given to it
    at the hand-over."""
    return UID_BASE + random.randrange(UID_SPAN)


def work_dir(instance_dir: Path) -> Path:
    return instance_dir / WORK_DIR


def prepare_work_dir(instance_dir: Path, uid: int | None) -> Path:
    """The instance's own directory, 0700, owned by its uid (its earlier runs' files too); the instance
    directory around it (the log, process.json) stays the agent's, searchable but not listable."""
    instance_dir.mkdir(parents=True, exist_ok=True)
    work = work_dir(instance_dir)
    work.mkdir(mode=0o700, exist_ok=True)
    os.chmod(work, 0o700)
    if uid is not None:
        os.chmod(instance_dir, 0o711)
        if work.stat().st_uid != uid:
            for root, dirs, files in os.walk(work):
                for entry in dirs + files:
                    os.lchown(os.path.join(root, entry), uid, uid)
            os.lchown(work, uid, uid)
    return work


def harden_var(var_dir: Path) -> None:
    """Ferry's var directory, against a user of its own: searchable (instances reach their directory and the
    model cache) but not listable; everything else in it (secret key, admin token, database, warm pool)
    readable by Ferry's user only. Done at every start, as files appear over time."""
    var_dir = Path(var_dir)
    try:
        os.chmod(var_dir, 0o711)
        for entry in os.scandir(var_dir):
            if entry.name in ("instances", "models", "engines"):
                os.chmod(entry.path, 0o711)
            elif not entry.is_symlink():
                os.chmod(entry.path, 0o700 if entry.is_dir() else 0o600)
    except OSError as exc:
        logger.warning("Could not restrict the permissions of %s (%s)", var_dir, exc)


def reachable_by_others(paths: list[str]) -> bool:
    """Whether a user of its own could run this: every parent directory searchable by others."""
    for path in paths:
        current = Path(path).resolve()
        for parent in [current, *current.parents]:
            try:
                mode = parent.stat().st_mode
            except OSError:
                return False
            if parent != current and not mode & 0o001:
                return False
    return True


@functools.lru_cache(maxsize=1)
def _bwrap_probe() -> tuple[str | None, bool, str]:
    found = shutil.which("bwrap")
    if found is None:
        return None, False, ""
    try:
        result = subprocess.run([found, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid",
                                 "--unshare-ipc", "--", "true"], capture_output=True, timeout=10, text=True)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return found, False, str(exc)
    return found, result.returncode == 0, result.stderr.strip()[:200]


def host_isolation() -> Isolation:
    """What this host allows, probed once per agent."""
    bwrap, works, error = _bwrap_probe()
    return decide(is_root=os.geteuid() == 0, bwrap=bwrap, bwrap_works=works, bwrap_error=error,
                  reachable_by_others=reachable_by_others([sys.executable, _project_root()]))


def _project_root() -> str:
    return str(Path(settings.BASE_DIR).resolve())


def bwrap_args(bwrap: str, var_dir: Path, own_dirs: list[Path], extra_paths: list[str], cwd: str | None,
               read_only_dirs: list[str] = ()) -> list[str]:
    """The bubblewrap part of the command: the view of the file system described above. `read_only_dirs`: an
    LLM engine's environment (checked by engine_view), shown read-only even inside the var directory."""
    var_dir = Path(var_dir).resolve()
    args = [bwrap, "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/dev/shm",
            # --perms applies to the next mount only: /tmp is writable by a user of its own too (torch and the
            # engines need a temporary directory; it is the instance's own tmpfs).
            "--perms", "1777", "--tmpfs", "/tmp"]
    bound = []  # host directories mounted as they are: what lies below them exists with the host's modes
    for directory in SYSTEM_DIRS:
        if os.path.islink(directory):
            args += ["--symlink", os.readlink(directory), directory]
        elif os.path.isdir(directory):
            args += ["--ro-bind", directory, directory]
            bound.append(directory)
    made: set[str] = set()

    def mount(option: str, path: str) -> None:
        # bwrap gives the directories it makes on the way the host's modes (/root: 0700), which would keep a
        # user of its own from reaching what is mounted below them: they are made 0755 first.
        for parent in reversed(Path(path).parents[:-1]):
            hidden = _under_any(str(parent), [str(var_dir)])  # in the var tmpfs: nothing of the host's there
            if str(parent) not in made and (hidden or not _under_any(str(parent), bound)):
                made.add(str(parent))
                args.extend(["--perms", "0755", "--dir", str(parent)])
        args.extend([option, path, path] if option != "--tmpfs" else [option, path])

    readable = set(_code_dirs()) | set(source_roots())
    readable |= {path for path in extra_paths if _bindable(path, var_dir)}
    for path in sorted(readable, key=len):  # parents first; what a bound directory holds is there already
        if not _under_any(path, bound):
            mount("--ro-bind-try", path)
            bound.append(path)
    # The var directory may lie inside the project: hide it, then show the parts an instance may see.
    bound = [path for path in bound if not _under_any(path, [str(var_dir)])]
    mount("--tmpfs", str(var_dir))
    if (var_dir / "models").is_dir():
        mount("--ro-bind", str(var_dir / "models"))
    for directory in read_only_dirs:
        if not _under_any(directory, bound):
            mount("--ro-bind", directory)
    for directory in own_dirs:
        mount("--bind", str(directory))
    if cwd:
        args += ["--chdir", cwd]
    return args + ["--"]


def engine_view(var_dir: Path, read_only_dirs: list[str], shared_dirs: list[str], *, shared_by_users: bool
                ) -> tuple[list[str], list[Path]]:
    """An LLM engine's directories from its launch spec: its environment, shown read-only (Ferry's own install
    under <var>/engines, or an operator's elsewhere, never the var directory or a directory holding it), and
    its service's compile cache under <var>/engines/cache, made here and shown read-write. The cache is shared
    by the service's instances: with users of their own it is writable by all (0777), and found only by its
    name, which holds the service's uid (<var>/engines/cache is not listable)."""
    var_dir = Path(var_dir).resolve()
    engines, cache = var_dir / "engines", var_dir / "engines" / "cache"
    shown = []
    for directory in read_only_dirs:
        resolved = Path(directory).resolve()
        inside_var = resolved == var_dir or var_dir in resolved.parents
        if (inside_var and engines not in resolved.parents) or resolved in var_dir.parents or resolved == Path("/"):
            raise ValueError(f"{directory} may not be shown to an instance")
        shown.append(str(resolved))
    shared = []
    for directory in shared_dirs:
        path = Path(directory)
        if path.parent.resolve() != cache or path.name in ("", ".", ".."):
            raise ValueError(f"{directory} is not a cache directory under {cache}")
        cache.mkdir(parents=True, exist_ok=True)
        for parent in (engines, cache):
            os.chmod(parent, 0o711)
        path.mkdir(exist_ok=True)
        os.chmod(path, 0o777 if shared_by_users else 0o700)
        shared.append(path)
    return shown, shared


def _under_any(path: str, roots: list[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def _bindable(path: str, var_dir: Path) -> bool:
    """The executable of a launch (the agent's own helper, a command outside the system's directories): shown
    read-only, unless it is the var directory, inside it, or holds it. Other paths a launch names are not
    mounted: user code chooses them, and could name any file Ferry's user may read."""
    if not path.startswith("/") or path in ("/", "/proc", "/dev", "/sys") or not os.path.exists(path):
        return False
    resolved = Path(path).resolve()
    return not (resolved == var_dir or var_dir in resolved.parents or resolved in var_dir.parents)


def _code_dirs() -> list[str]:
    return [sys.prefix, sys.base_prefix, str(Path(sys.executable).resolve().parent), _project_root()]


def source_roots() -> list[str]:
    """The directories an admin allows file:// model sources from (FERRY_FILE_SOURCE_ROOTS): models used in
    place lie there, so instances see them, read-only (a part of var/ among them stays hidden)."""
    return [str(Path(root).resolve()) for root in getattr(settings, "FERRY_FILE_SOURCE_ROOTS", [])
            if Path(root).is_dir() and str(Path(root).resolve()) != "/"]


def paths_named(argv: list[str], env: dict[str, str], cwd: str | None) -> list[str]:
    """Absolute paths in a command, its `--flag=value`s, environment values and working directory."""
    found = [cwd] if cwd else []
    for item in [*argv, *env.values()]:
        for part in item.replace("=", ":").split(":"):
            if part.startswith("/"):
                found.append(part.rstrip("/") or "/")
    return found


def standby_view(var_dir: Path) -> list[str]:
    """What a warm pool standby's sandbox shows of the host's files (its instance is not known when it starts)."""
    var_dir = Path(var_dir).resolve()
    return [*SYSTEM_DIRS, *_code_dirs(), *source_roots(), str(var_dir / "models"), str(var_dir / "instances")]
