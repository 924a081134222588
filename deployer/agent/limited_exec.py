"""Sets up an instance's process, then becomes its command (exec: same pid, same process group).

Run by the agent as `python -I -S limited_exec.py [options] -- <executable> <argv...>`, options:

- `--memory BYTES`: RLIMIT_DATA, soft and hard;
- `--uid U --gid G`: the instance's own user and group, without supplementary groups (the agent runs as
  root; under bubblewrap this runs inside the sandbox, after bwrap built its mounts as root);
- `--ignore-stop`: SIGTERM and SIGINT ignored, for bubblewrap's outer process (ignored signals stay ignored
  across exec): the agent signals the whole process group, and bwrap dying of SIGTERM at once would make
  the agent take the instance for ended while it still drains. The command's side restores them
  (`--uid` or `--restore-signals`), so the command gets SIGTERM as usual and bwrap exits with its status.

A separate program rather than a `preexec_fn`: the agent has threads (probes, Redis), and running Python
code between fork and exec in a threaded process can deadlock. Standard library only, nothing from Ferry.

RLIMIT_DATA, not RLIMIT_AS: since Linux 4.7 it counts private writable mappings (heap, anonymous mmap,
thread stacks), which is close to what the process really uses, while RLIMIT_AS also counts address space
that numpy, onnxruntime and every thread's malloc arena reserve without using (measured in
docs/node-agent.md). An allocation past the limit fails: Python raises MemoryError, C++ throws bad_alloc.
"""

import os
import resource
import signal
import sys

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def parse(args: list[str]) -> tuple[dict, str, list[str]]:
    options = {}
    while args and args[0] != "--":
        flag = args.pop(0)
        if flag in ("--ignore-stop", "--restore-signals"):
            options[flag] = True
        else:
            options[flag] = int(args.pop(0))
    if len(args) < 3:
        raise SystemExit("usage: limited_exec.py [options] -- <executable> <argv...>")
    return options, args[1], args[2:]


def main() -> None:
    options, executable, argv = parse(sys.argv[1:])
    if options.get("--ignore-stop"):
        for number in STOP_SIGNALS:
            signal.signal(number, signal.SIG_IGN)
    elif options.get("--restore-signals") or "--uid" in options:
        for number in STOP_SIGNALS:
            signal.signal(number, signal.SIG_DFL)
    if "--memory" in options:
        limit_bytes = options["--memory"]
        _soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
        if hard != resource.RLIM_INFINITY:
            limit_bytes = min(limit_bytes, hard)  # lowering is always allowed, raising past hard is not
        resource.setrlimit(resource.RLIMIT_DATA, (limit_bytes, limit_bytes))
    if "--uid" in options:
        # Groups first: after setuid there is no right left to change them. setuid from root clears the
        # capabilities; under bubblewrap no_new_privs keeps setuid programs from giving them back.
        os.setgroups([])
        os.setgid(options["--gid"])
        os.setuid(options["--uid"])
    try:
        os.execv(executable, argv)
    except OSError as exc:
        print(f"ferry node agent: could not run {executable}: {exc}", file=sys.stderr, flush=True)
        sys.exit(127)


if __name__ == "__main__":
    main()
