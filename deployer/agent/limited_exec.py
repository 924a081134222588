"""Applies an instance's memory limit, then becomes its command (exec: same pid, same process group).

Run by the agent as `python -I -S limited_exec.py <bytes> <executable> <argv...>`. A separate program
rather than a `preexec_fn`: the agent has threads (probes, Redis), and running Python code between fork
and exec in a threaded process can deadlock. Standard library only, nothing from Ferry or Django.

RLIMIT_DATA, not RLIMIT_AS: since Linux 4.7 it counts private writable mappings (heap, anonymous mmap,
thread stacks), which is close to what the process really uses, while RLIMIT_AS also counts address space
that numpy, onnxruntime and every thread's malloc arena reserve without using (measured in
docs/node-agent.md). An allocation past the limit fails: Python raises MemoryError, C++ throws bad_alloc.
"""

import os
import resource
import sys


def main() -> None:
    limit_bytes, executable, argv = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    _soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit_bytes = min(limit_bytes, hard)  # lowering is always allowed, raising past hard is not
    resource.setrlimit(resource.RLIMIT_DATA, (limit_bytes, limit_bytes))
    try:
        os.execv(executable, argv)
    except OSError as exc:
        print(f"ferry node agent: could not run {executable}: {exc}", file=sys.stderr, flush=True)
        sys.exit(127)


if __name__ == "__main__":
    main()
