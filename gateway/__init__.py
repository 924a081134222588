"""Ferry's gateway: the data plane in front of model instances (see docs/gateway.md).

Its own process (`python -m gateway`); it never imports Django. The control plane pushes the routing table
to Redis (deployer/routing.py); the gateway caches it in memory and proxies EAS `/api/predict/<service>`,
KServe V1 and Open Inference Protocol V2 requests to ready instances.
"""
