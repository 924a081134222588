"""The JSON Schema (Draft 2020-12) of the service files Ferry accepts.

SERVICE_FILE_SCHEMA is plain data (json.dumps works on it) so that it can be
published as is, e.g. in the OpenAPI document. The small builders below only
keep it short; every object closes itself with additionalProperties false so
that a misspelt field is reported by name instead of being silently ignored.

Rules that span several fields (one name in two places, which processor needs
a model, min <= max, ...) are not expressible here in a readable way and live
in checks.py.

"x-expected" is Ferry's own annotation (validators ignore unknown keywords):
it words what a value must be when the shape alone would read badly, and the
error formatter uses it as "<path>: must be <x-expected>".
"""

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def integer(minimum=None, maximum=None, **extra):
    return _bounded("integer", minimum, maximum, extra)


def number(minimum=None, maximum=None, **extra):
    return _bounded("number", minimum, maximum, extra)


def _bounded(kind, minimum, maximum, extra):
    schema = {"type": kind, **extra}
    if minimum is not None:
        schema["minimum"] = minimum
    if maximum is not None:
        schema["maximum"] = maximum
    return schema


def string(**extra):
    return {"type": "string", **extra}


def boolean(**extra):
    return {"type": "boolean", **extra}


def one_of_values(*values, **extra):
    return {"enum": list(values), **extra}


def array(items, **extra):
    return {"type": "array", "items": items, **extra}


def closed_object(properties, required=(), **extra):
    schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return {**schema, **extra}


def string_map(**extra):
    """An object whose keys are free (labels, features) and values strings."""
    return {"type": "object", "additionalProperties": {"type": "string"}, **extra}


NON_EMPTY = {"minLength": 1}

SERVICE_NAME = string(
    pattern=r"^[a-z][a-z0-9_]{0,62}$",
    **{
        "x-expected": "a name of lowercase letters, digits and underscores that starts "
        "with a letter and has at most 63 characters"
    },
)

# A model, processor or warm-up location; its scheme is checked in checks.py
# so that the message can name the scheme that is not supported.
LOCATION = string(**NON_EMPTY)

PORT = integer(1, 65535)

COUNT_OR_PERCENTAGE = {
    "anyOf": [integer(0), string(pattern=r"^(100|[1-9]?[0-9])%$")],
    "x-expected": 'an integer >= 0 or a percentage such as "25%"',
}

RPC = closed_object(
    {
        "keepalive": integer(1, description="Longest time one request may take, in ms."),
        "io_threads": integer(1),
        "worker_threads": integer(1),
        "max_queue_size": integer(1),
        "batching": boolean(),
        "max_batch_size": integer(1),
        "max_batch_timeout": integer(0, description="Milliseconds to wait to fill a batch."),
        "rate_limit": integer(0, description="Requests per second per instance; 0: no limit."),
        "enable_sigterm": boolean(),
        # EAS examples write this one as 1/0 as well as true/false.
        "enable_jemalloc": {
            "type": ["boolean", "integer"],
            "minimum": 0,
            "maximum": 1,
            "x-expected": "true or false",
        },
    }
)

METADATA = closed_object(
    {
        "name": SERVICE_NAME,
        "instance": integer(0),
        # Ferry (Knative's containerConcurrency): requests one instance serves at once; more wait in the
        # gateway's queue (rpc.max_queue_size). 0: no limit.
        "container_concurrency": integer(0, description="Requests in flight per instance; 0: no limit."),
        "workspace_id": string(),
        "group": string(),
        "resource": string(description='Ferry cluster name; "" is the default cluster.'),
        "resource_burstable": boolean(),
        "cpu": number(0),
        "memory": integer(0, description="MB per instance."),
        "gpu": integer(0),
        "gpu_memory": integer(0, description="GB of GPU memory per instance (shared GPU)."),
        "gpu_core_percentage": integer(1, 100),
        "qos": one_of_values("BestEffort"),
        "cuda": string(),
        "shm_size": integer(0, description="GB of shared memory (/dev/shm)."),
        "disk": {
            "anyOf": [integer(0), string(pattern=r"^[0-9]+(Gi|G)$")],
            "x-expected": 'a size in GB such as 30 or "30Gi"',
        },
        "rdma": integer(0),
        "enable_grpc": boolean(),
        "enable_webservice": boolean(),
        "type": string(),
        # Ferry's model mesh (docs/mesh.md): the pool service (type "ModelPool") this model is served by.
        "pool": SERVICE_NAME,
        "workload_type": string(),
        "resource_rebalancing": boolean(),
        "rpc": RPC,
        "rolling_strategy": closed_object(
            {
                "max_surge": COUNT_OR_PERCENTAGE,
                "max_unavailable": COUNT_OR_PERCENTAGE,
                # Ferry (Kubernetes' progressDeadlineSeconds): a rollout fails when its new instances make no
                # progress for this long; a canary resting with its share ready never times out.
                "progress_deadline_seconds": integer(
                    1, description="Seconds a rollout may go without a new instance becoming ready."
                ),
            }
        ),
        "eas": closed_object({"termination_grace_period": integer(0)}),
        "scheduling": closed_object(
            {"spread": closed_object({"policy": one_of_values("host", "zone", "default")})}
        ),
    }
)

PROBE = closed_object(
    {
        "http_get": closed_object(
            {"path": string(), "port": PORT, "scheme": one_of_values("HTTP", "HTTPS")}
        ),
        "tcp_socket": closed_object({"port": PORT}),
        "exec": closed_object({"command": array(string(), minItems=1)}, required=["command"]),
        "initial_delay_seconds": integer(0),
        "period_seconds": integer(1),
        "timeout_seconds": integer(1),
        "success_threshold": integer(1),
        "failure_threshold": integer(1),
    }
)

CONTAINER = closed_object(
    {
        "image": string(**NON_EMPTY),
        "script": string(),
        "command": {
            "type": ["string", "array"],
            "items": string(),
            "x-expected": "a string or a list of strings",
        },
        "args": array(string()),
        "port": PORT,
        "env": array(
            closed_object(
                {
                    "name": string(
                        pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$",
                        **{"x-expected": "an environment variable name"},
                    ),
                    "value": string(),
                },
                required=["name", "value"],
            )
        ),
        "prepare": closed_object(
            {"pythonRequirements": array(string()), "pythonRequirementsPath": string()}
        ),
        "startup_check": PROBE,
        "liveness_check": PROBE,
        "readiness_check": PROBE,
    },
    required=["image"],
)

STORAGE = closed_object(
    {
        "mount_path": string(pattern=r"^/", **{"x-expected": "an absolute path"}),
        "oss": closed_object(
            {
                "path": string(pattern=r"^oss://", **{"x-expected": 'an "oss://" path'}),
                "endpoint": string(),
                "readOnly": boolean(),
            },
            required=["path"],
        ),
        "nfs": closed_object(
            {"server": string(**NON_EMPTY), "path": string(), "readOnly": boolean()},
            required=["server", "path"],
        ),
        "git": closed_object(
            {
                "repo": string(**NON_EMPTY),
                "branch": string(),
                "commit": string(),
                "username": string(),
                "password": string(),
            },
            required=["repo"],
        ),
        "image": closed_object(
            {"image": string(**NON_EMPTY), "path": string()}, required=["image", "path"]
        ),
        "empty_dir": closed_object(
            {
                "medium": one_of_values("", "memory"),
                "size_limit": integer(0, description="GB."),
            }
        ),
        "properties": closed_object({"resource_type": string()}),
    },
    required=["mount_path"],
)

# EAS's metrics, and Ferry's: requests in flight per instance (any service) and requests waiting in an LLM
# engine's own queue per instance (vllm, sglang: checks.py), as KServe and the vLLM stack scale LLMs.
SCALING_METRICS = ("qps", "cpu", "gpu[util]", "queue[backlog]", "concurrency", "llm[waiting]")
KPA_ANNOTATION_NAMES = (
    "metric", "target", "target-utilization-percentage", "window", "panic-window-percentage",
    "panic-threshold-percentage", "max-scale-up-rate", "max-scale-down-rate", "scale-to-zero-grace-period",
    "scale-down-delay", "initial-scale", "activation-scale", "scale-to-zero-pod-retention-period",
    "target-burst-capacity",
)

AUTOSCALER = closed_object(
    {
        "min": integer(0),
        "max": integer(1),
        "scaleStrategies": array(
            closed_object(
                {
                    "metricName": one_of_values(*SCALING_METRICS),
                    "threshold": number(exclusiveMinimum=0),
                    "service": string(),
                },
                required=["metricName", "threshold"],
            ),
            minItems=1,
        ),
        # Ferry: Knative's KPA instead of the EAS metric scaler, set with Knative's annotation names.
        "kpa": closed_object({f"autoscaling.knative.dev/{name}": {"type": ["string", "number"]}
                              for name in KPA_ANNOTATION_NAMES}),
        "behavior": closed_object(
            {
                "scaleUp": closed_object({"stabilizationWindowSeconds": integer(0)}),
                "scaleDown": closed_object({"stabilizationWindowSeconds": integer(0)}),
                "onZero": closed_object(
                    {
                        "scaleDownGracePeriodSeconds": integer(0),
                        "scaleUpActivationReplicas": integer(1),
                    }
                ),
            }
        ),
    },
    required=["min", "max"],
)

CLOUD = closed_object(
    {
        "computing": closed_object(
            {
                "instance_type": string(),
                "instances": array(
                    closed_object(
                        {"type": string(**NON_EMPTY), "spot_price_limit": number(0)},
                        required=["type"],
                    )
                ),
                "disable_spot_protection_period": boolean(),
            }
        ),
        "networking": closed_object(
            {"vpc_id": string(), "vswitch_id": string(), "security_group_id": string()}
        ),
    }
)

# Ferry's own extension: how a new version replaces the running one.
# Ferry's model mesh (docs/mesh.md): how a pool (metadata.type "ModelPool") places its models.
MODEL_MESH = closed_object(
    {
        "rate_per_copy": number(exclusiveMinimum=0, description="Requests/s one loaded copy takes before another "
                                "copy is loaded on another instance."),
        "max_copies": integer(0, description="Copies of one model at most; 0: up to every instance."),
        "idle_seconds": number(0, description="A copy beyond the first unused this long is unloaded."),
        "load_timeout": integer(1, 3600, description="Seconds a request may wait for its model to load."),
        "model_memory": integer(1, description="MB per instance for models; default: metadata.memory less "
                                "what the empty server uses."),
        "max_adapters": integer(1, 64, description="An adapter pool (vllm): LoRA adapters one engine holds."),
        "max_lora_rank": integer(1, description="An adapter pool (vllm): the largest adapter rank it loads."),
    }
)

ROLLOUT = closed_object(
    {
        "strategy": one_of_values("rolling", "canary", "blue-green"),
        "canary_weight": integer(0, 100, description="Percent of traffic for the canary."),
    }
)

SERVICE_FILE_SCHEMA = closed_object(
    {
        "name": SERVICE_NAME,
        "token": string(),
        "model_path": LOCATION,
        "oss_endpoint": string(),
        "role_arn": string(),
        "model_entry": string(),
        "model_config": {
            "type": ["object", "string"],
            "x-expected": "an object or a string",
        },
        "processor": string(**NON_EMPTY),
        # Written by Ferry: the EAS code the user gave, when it is not the
        # Ferry processor name itself (e.g. tensorflow_gpu_1.15).
        "processor_code": string(**NON_EMPTY),
        "processor_path": LOCATION,
        "processor_entry": string(),
        "processor_mainclass": string(),
        "processor_type": one_of_values("python", "cpp", "java"),
        "processor_params": array(string()),
        "warm_up_data_path": LOCATION,
        "metadata": METADATA,
        "containers": array(CONTAINER, minItems=1),
        "storage": array(STORAGE),
        "dockerAuth": string(),
        "networking": closed_object(
            {"gateway": string(), "disable_internet_endpoint": boolean()}
        ),
        "cloud": CLOUD,
        "labels": string_map(),
        "features": string_map(),
        "runtime": closed_object({"enable_crash_block": boolean()}),
        "autoscaler": AUTOSCALER,
        "rollout": ROLLOUT,
        "model_mesh": MODEL_MESH,
        # An asynchronous service's queues (metadata.type "Async"): checked by name in asynchronous.py.
        "queue": {"type": "object"},
    },
    **{
        "$schema": JSON_SCHEMA_DIALECT,
        "title": "Ferry service file (PAI-EAS compatible)",
    },
)
