"""The node agent of the local cluster (`python manage.py runagent`), like a kubelet for one host.

It reads the desired instance set (`deployer.models.LocalInstance`, written by the local driver), runs each
instance as a process on a free loopback port, probes readiness, restarts crashes with backoff, stops
instances gracefully, keeps per-instance logs and reports what it observes back into the same rows.
See docs/node-agent.md.

Modules: `supervisor` (the loop), `instance` (one instance's lifecycle), `launch` (the launch spec and
limits), `processes` (spawning, signalling, exits), `probes`, `statefiles`, `logs`, `wake` (Redis wake-ups
and reconcile notifications), `limited_exec` (applies the memory limit, then becomes the command),
`warmpool` (standby model servers that become instances of the built-in processors without a cold start).
"""
