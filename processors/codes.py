"""Ferry processor names and the EAS processor codes that map onto them.

EAS service files name a built-in processor by a *processor code* such as
``tensorflow_gpu_1.15`` or ``pytorch_cpu_1.6``. Ferry runs a smaller set of
processors, each backed by an open serving runtime; this module turns an EAS
code (or a Ferry name, which is accepted as its own code) into the Ferry name.

Pure Python on purpose: the service-file validator imports it outside Django.
"""

import difflib
import re

KNOWN_PROCESSORS = (
    "sklearn",
    "xgboost",
    "lightgbm",
    "onnx",
    "python",
    "triton",
    "tfserving",
    "torchserve",
    "mlserver",
    "pmml",
    "vllm",
    "sglang",
    "custom",
)

# Large-language-model engines: they serve the OpenAI API (/v1/chat/completions, /v1/completions,
# /v1/embeddings, /v1/models) under the service's name, stream tokens, and expose their own load on /metrics
# (queue depth, KV-cache use), which the gateway routes by and the autoscaler may scale on.
LLM_PROCESSORS = frozenset({"vllm", "sglang"})

# These load a model file or directory at start-up, so a service file that
# uses them must say where the model is (model_path). triton is checked apart:
# its model repository may instead come from processor_params.
PROCESSORS_NEEDING_A_MODEL = frozenset(
    {"sklearn", "xgboost", "lightgbm", "onnx", "pmml", "tfserving", "torchserve", "vllm", "sglang"}
)

# EAS writes framework codes as <framework>_<device>[_<version>], e.g.
# tensorflow_cpu, tensorflow_gpu_1.15, tensorflow_cpu_2.x, pytorch_gpu_1.6.
# The version only picked an EAS image; Ferry's runtime serves the model's own
# format, so every version maps to the same processor. The device part is
# matched strictly so that a typo such as "pytorch_gpuu" is reported.
_VERSION = r"(_[0-9][0-9a-z.]*)?"
_CODE_PATTERNS = (
    (re.compile(rf"tensorflow_(cpu|gpu){_VERSION}"), "tfserving"),
    (re.compile(rf"pytorch_(cpu|gpu){_VERSION}"), "torchserve"),
)

# What an error message lists, so users see the accepted shapes of codes too.
KNOWN_CODES = KNOWN_PROCESSORS + (
    "tensorflow_cpu[_<version>]",
    "tensorflow_gpu[_<version>]",
    "pytorch_cpu[_<version>]",
    "pytorch_gpu[_<version>]",
)


def resolve_processor(code: str) -> str:
    """Return the Ferry processor name for an EAS processor code or Ferry name.

    Raises ValueError, whose message lists the known codes, for anything else.
    """
    if isinstance(code, str):
        if code in KNOWN_PROCESSORS:
            return code
        for pattern, processor in _CODE_PATTERNS:
            if pattern.fullmatch(code):
                return processor
    raise ValueError(
        f"unknown processor code {_quoted(code)}{_close_match(code)}; "
        f"known codes: {', '.join(KNOWN_CODES)}"
    )


def _quoted(code: object) -> str:
    return f'"{code}"' if isinstance(code, str) else repr(code)


def _close_match(code: object) -> str:
    close = difflib.get_close_matches(code, KNOWN_PROCESSORS, n=1) if isinstance(code, str) else []
    return f' (did you mean "{close[0]}"?)' if close else ""
