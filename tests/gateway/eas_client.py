"""Calls a service with the official EAS Python SDK (eas-prediction), as a user's program would.

    python eas_client.py gateway|direct ENDPOINT SERVICE TOKEN BODY [COUNT]

gateway: the SDK signs each request and posts it to ENDPOINT/api/predict/SERVICE.
direct:  the SDK asks ENDPOINT/api/v1/servicediscovery/upstreams/SERVICE for the instances and posts to them
         itself, balancing by weight.
SERVICE may carry a sub-path and a query ("svc/v1/models/svc:predict?x=1"), as EAS users write it. Prints
{"answers": [the responses as text]} or {"error": [status, message]}, with "utc_offset": the seconds the
local time zone (TZ) is east of UTC, since the SDK signs local time. Runs in the venv that
conftest.eas_python makes, never in the project's.
"""

import json
import sys
import time

from eas_prediction import ENDPOINT_TYPE_DIRECT, PredictClient, PredictException, StringRequest


def main(mode: str, endpoint: str, service: str, token: str, body: str, count: str = "1") -> None:
    client = PredictClient(endpoint, service)
    client.set_token(token)
    client.set_retry_count(1)
    if mode == "direct":
        client.set_endpoint_type(ENDPOINT_TYPE_DIRECT)
    client.init()
    try:
        answers = [client.predict(StringRequest(body)).response_data.decode() for _ in range(int(count))]
    except PredictException as error:
        print(json.dumps({"error": [error.code, str(error.message)], "utc_offset": time.localtime().tm_gmtoff}))
        return
    finally:
        client.destroy()
    print(json.dumps({"answers": answers, "utc_offset": time.localtime().tm_gmtoff}))


if __name__ == "__main__":
    main(*sys.argv[1:])
