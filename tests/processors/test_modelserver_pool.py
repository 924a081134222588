"""The model server's pool mode (the model mesh): real pool processes started as the node agent starts them
(registry.local_pool_launch), models loaded and unloaded over HTTP, predictions on V1, V2 and EAS paths."""

from __future__ import annotations

import dataclasses
import functools
import http.server
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import joblib
import pytest
import requests
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

from processors.demo import IRIS_SAMPLE
from processors.registry import local_pool_launch
from tests.processors.helpers import ServerProcess

TOKEN = "t0ken-of-the-pool"
AUTH = {"Authorization": TOKEN}
SETOSA = 0
V1_BODY = {"instances": [IRIS_SAMPLE]}
V2_BODY = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": IRIS_SAMPLE}]}
DEADLINE_SECONDS = 30


@pytest.fixture(scope="module")
def start_pool(tmp_path_factory):
    """start_pool(processor, name, env) -> a ready pool server with the token (and `env`) in its environment;
    all are stopped at the end of the module."""
    started: list[ServerProcess] = []

    def start(processor: str = "sklearn", name: str = "mesh", env: dict | None = None) -> ServerProcess:
        launch = local_pool_launch({"name": name, "processor": processor}, service_name=name, python=sys.executable)
        launch = dataclasses.replace(launch, env={**launch.env, "FERRY_SERVICE_TOKEN": TOKEN, **(env or {})})
        server = ServerProcess(launch, tmp_path_factory.mktemp("pool-logs") / f"{name}-{processor}.log")
        started.append(server)
        return server.wait_ready()

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def pool(start_pool) -> ServerProcess:
    # No network allowed to its fetches (the test harness allows loopback to every process it starts).
    return start_pool(env={"FERRY_FETCH_ALLOWED_NETWORKS": ""})


@pytest.fixture(scope="module")
def forest_dir(tmp_path_factory) -> Path:
    """A model large enough that loading it adds resident memory (a few MB)."""
    features, labels = load_iris(return_X_y=True)
    directory = tmp_path_factory.mktemp("forest")
    joblib.dump(RandomForestClassifier(n_estimators=300, random_state=0).fit(features, labels),
                directory / "model.joblib")
    return directory


@pytest.fixture(scope="module")
def iris_dir(demo_models) -> Path:
    return demo_models["iris_model"].parent


def load(server: ServerProcess, key: str, **parameters) -> requests.Response:
    return server.post(f"/v2/repository/models/{key}/load", json={"parameters": parameters}, headers=AUTH)


def unload(server: ServerProcess, key: str) -> requests.Response:
    return server.post(f"/v2/repository/models/{key}/unload", headers=AUTH)


def index(server: ServerProcess) -> list[dict]:
    answer = server.post("/v2/repository/index", headers=AUTH)
    assert answer.status_code == 200, answer.text
    return answer.json()


def report(server: ServerProcess) -> dict:
    answer = requests.get(server.url("/ferry/pool"), headers=AUTH, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_an_empty_pool_is_ready_and_reports_its_memory(start_pool):
    server = start_pool(name="empty")

    ready = server.get("/v2/health/ready")
    pool_report = report(server)

    assert ready.status_code == 200 and ready.json() == {"ready": True}
    assert pool_report["pool"] == "empty" and pool_report["processor"] == "sklearn"
    assert pool_report["models"] == []
    assert pool_report["baseline_bytes"] > 0 and pool_report["rss_bytes"] > 0
    assert index(server) == []


def test_it_serves_two_loaded_models_by_key_on_v1_v2_and_eas(pool, iris_dir, forest_dir):
    assert load(pool, "iris-a", model_dir=str(iris_dir)).status_code == 200
    assert load(pool, "forest-b", model_dir=str(forest_dir), served_name="svc", version="v3").status_code == 200

    for key in ("iris-a", "forest-b"):
        v1 = pool.post(f"/v1/models/{key}:predict", json=V1_BODY, headers=AUTH)
        v2 = pool.post(f"/v2/models/{key}/infer", json=V2_BODY, headers=AUTH)
        eas = pool.post(f"/api/predict/{key}", json=V1_BODY, headers=AUTH)
        eas_v2 = pool.post(f"/api/predict/{key}/v2/models/{key}/infer", json=V2_BODY, headers=AUTH)
        assert v1.status_code == 200 and v1.json() == {"predictions": [SETOSA]}, (key, v1.text)
        assert v2.status_code == 200 and v2.json()["outputs"][0]["data"] == [SETOSA], (key, v2.text)
        assert eas.status_code == 200 and eas.json() == {"predictions": [SETOSA]}, (key, eas.text)
        assert eas_v2.status_code == 200 and eas_v2.json()["outputs"][0]["data"] == [SETOSA], (key, eas_v2.text)

    served = pool.post("/v2/models/forest-b/infer", json=V2_BODY, headers=AUTH).json()
    assert (served["model_name"], served["model_version"]) == ("svc", "v3")
    assert pool.post("/v2/models/iris-a/infer", json=V2_BODY, headers=AUTH).json()["model_name"] == "iris-a"
    metadata = requests.get(pool.url("/v2/models/forest-b"), headers=AUTH, timeout=30).json()
    assert (metadata["name"], metadata["versions"], metadata["platform"]) == ("svc", ["v3"], "sklearn")
    assert requests.get(pool.url("/v2/models/forest-b/ready"), headers=AUTH, timeout=30).status_code == 200


def test_the_index_and_the_pool_report_list_what_is_loaded(start_pool, forest_dir):
    server = start_pool(name="report")
    before = time.time()

    loaded = load(server, "forest", model_dir=str(forest_dir), version="7")
    for _ in range(2):
        assert server.post("/v1/models/forest:predict", json=V1_BODY, headers=AUTH).status_code == 200

    assert loaded.status_code == 200, loaded.text
    answer = loaded.json()
    assert answer["name"] == "forest" and answer["loaded"] is True
    assert answer["memory_bytes"] > 0 and answer["load_seconds"] >= 0
    assert index(server) == [{"name": "forest", "version": "7", "state": "READY", "reason": ""}]
    (model,) = report(server)["models"]
    assert model["name"] == "forest" and model["served_name"] == "forest" and model["version"] == "7"
    assert model["state"] == "READY" and model["requests"] == 2
    assert model["memory_bytes"] == answer["memory_bytes"]
    assert before <= model["loaded_at"] <= time.time()


def test_unloading_a_model_takes_it_out_of_the_index_and_its_requests_answer_404(pool, iris_dir):
    assert load(pool, "gone", model_dir=str(iris_dir)).status_code == 200

    unloaded = unload(pool, "gone")
    again = unload(pool, "gone")

    assert unloaded.status_code == 200 and unloaded.json() == {"name": "gone", "unloaded": True}
    assert "gone" not in [model["name"] for model in index(pool)]
    assert "gone" not in [model["name"] for model in report(pool)["models"]]
    assert again.status_code == 404 and again.json() == {"error": "model gone is not loaded on this instance"}
    answer = pool.post("/v1/models/gone:predict", json=V1_BODY, headers=AUTH)
    assert answer.status_code == 404 and answer.json() == {"error": "model gone is not loaded on this instance"}


def test_a_key_never_loaded_answers_404_naming_it_on_every_protocol(pool):
    answers = [
        pool.post("/v1/models/nowhere:predict", json=V1_BODY, headers=AUTH),
        pool.post("/v2/models/nowhere/infer", json=V2_BODY, headers=AUTH),
        requests.get(pool.url("/v2/models/nowhere"), headers=AUTH, timeout=30),
        requests.get(pool.url("/v2/models/nowhere/ready"), headers=AUTH, timeout=30),
        pool.post("/api/predict/nowhere", json=V1_BODY, headers=AUTH),
        pool.post("/api/predict/nowhere/v1/models/nowhere:predict", json=V1_BODY, headers=AUTH),
    ]

    for answer in answers:
        assert answer.status_code == 404, answer.text
        assert answer.json() == {"error": "model nowhere is not loaded on this instance"}
    assert pool.post("/v2/repository/nothing", headers=AUTH).status_code == 404  # no such route


def test_loading_a_loaded_key_again_is_a_no_op_unless_it_names_another_model(pool, iris_dir, forest_dir):
    first = load(pool, "twice", model_dir=str(iris_dir))
    same = load(pool, "twice", model_dir=str(iris_dir) + "/")
    other = load(pool, "twice", model_dir=str(forest_dir))

    assert first.status_code == 200 and same.status_code == 200
    assert same.json() == first.json()
    assert other.status_code == 409 and "model twice is already loaded" in other.json()["error"]
    assert [model["name"] for model in index(pool)].count("twice") == 1


def test_concurrent_loads_of_one_key_load_it_once_and_answer_both(start_pool, forest_dir):
    server = start_pool(name="concurrent")
    answers: list[requests.Response] = []

    threads = [threading.Thread(target=lambda: answers.append(load(server, "shared", model_dir=str(forest_dir))))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [answer.status_code for answer in answers] == [200, 200, 200], [answer.text for answer in answers]
    assert len({answer.text for answer in answers}) == 1
    assert server.output().count("loaded shared (") == 1


@pytest.mark.parametrize("body, named", [
    ({}, "parameters.model_dir is required"),
    ({"parameters": {}}, "parameters.model_dir is required"),
    ({"parameters": []}, "parameters must be a JSON object"),
    ({"parameters": {"model_dir": 3}}, "parameters.model_dir must be a string"),
    ({"parameters": {"model_dir": "models/iris"}}, "parameters.model_dir must be an absolute path"),
    ({"parameters": {"model_dir": "/no/such/model"}}, "parameters.model_dir: /no/such/model does not exist"),
    ({"parameters": {"model_dir": "/tmp", "handler": "/tmp/app.py"}}, "parameters.handler is for the python"),
    ({"parameters": {"model_entry": "model.joblib"}}, "parameters.model_dir is required"),
    ({"parameters": {"model_dir": "/tmp", "served_name": 1}}, "parameters.served_name must be a string"),
])
def test_a_bad_load_body_answers_400_naming_the_parameter(pool, body, named):
    answer = pool.post("/v2/repository/models/bad/load", json=body, headers=AUTH)

    assert answer.status_code == 400, answer.text
    assert named in answer.json()["error"]


def test_a_model_the_framework_cannot_read_answers_400_with_its_reason(pool, tmp_path):
    (tmp_path / "model.joblib").write_bytes(b"not a pickle at all")
    empty = tmp_path / "empty"
    empty.mkdir()

    corrupt = load(pool, "corrupt", model_dir=str(tmp_path))
    no_file = load(pool, "nofile", model_dir=str(empty))
    not_json = pool.post("/v2/repository/models/x/load", data=b"{not json", headers=AUTH)

    assert corrupt.status_code == 400
    assert corrupt.json()["error"].startswith(f"parameters.model_dir: cannot load the sklearn model from {tmp_path}: ")
    assert no_file.status_code == 400 and "parameters.model_dir:" in no_file.json()["error"]
    assert "holds no model files" in no_file.json()["error"]
    assert not_json.status_code == 400 and "not JSON" in not_json.json()["error"]
    failed = {model["name"]: model for model in index(pool)}["corrupt"]
    assert failed["state"] == "UNAVAILABLE" and failed["reason"] == corrupt.json()["error"]


def test_every_route_but_the_probes_needs_the_pool_token(pool, iris_dir):
    assert load(pool, "guarded", model_dir=str(iris_dir)).status_code == 200
    calls = [
        ("POST", "/v2/repository/models/guarded/load"), ("POST", "/v2/repository/models/guarded/unload"),
        ("POST", "/v2/repository/index"), ("GET", "/ferry/pool"), ("POST", "/v1/models/guarded:predict"),
        ("POST", "/v2/models/guarded/infer"), ("POST", "/api/predict/guarded"), ("GET", "/v2/models/guarded"),
    ]

    for method, path in calls:
        answer = requests.request(method, pool.url(path), json=V1_BODY, timeout=30)
        assert answer.status_code == 401, (path, answer.text)
    assert pool.get("/v2/health/ready").status_code == 200
    assert pool.get("/v2/health/live").status_code == 200
    assert "guarded" in [model["name"] for model in index(pool)]  # the refused unload did nothing


def test_loads_do_not_fail_the_requests_a_loaded_model_is_serving(pool, iris_dir, forest_dir):
    assert load(pool, "busy", model_dir=str(iris_dir)).status_code == 200
    statuses: list[int] = []
    loading = threading.Event()
    done = threading.Event()

    def serve() -> None:
        with requests.Session() as session:
            while not done.is_set():
                answer = session.post(pool.url("/v1/models/busy:predict"), json=V1_BODY, headers=AUTH, timeout=30)
                statuses.append(answer.status_code if answer.json() == {"predictions": [SETOSA]} else -1)
                if statuses[-1] == 200:
                    loading.set()

    client = threading.Thread(target=serve)
    client.start()
    try:
        assert loading.wait(DEADLINE_SECONDS)
        served_before = len(statuses)
        for number in range(3):
            assert load(pool, f"meanwhile-{number}", model_dir=str(forest_dir)).status_code == 200
        served_during = len(statuses) - served_before
    finally:
        done.set()
        client.join()

    assert served_during > 0
    assert set(statuses) == {200}


HANDLER = textwrap.dedent('''
    """Answers once the test lets it: it writes `started` next to itself, then waits for `release`."""
    import time
    from pathlib import Path

    HERE = Path(__file__).parent

    def predict(body):
        (HERE / "started").touch()
        deadline = time.monotonic() + 30
        while not (HERE / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return {"predictions": ["finished"]}
''')


def test_a_request_running_on_a_model_being_unloaded_finishes(start_pool, tmp_path):
    server = start_pool(processor="python", name="handlers")
    (tmp_path / "app.py").write_text(HANDLER)
    assert load(server, "slow", handler=str(tmp_path / "app.py")).status_code == 200
    answers: list[requests.Response] = []
    client = threading.Thread(target=lambda: answers.append(server.post("/api/predict/slow", json={}, headers=AUTH)))

    client.start()
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not (tmp_path / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (tmp_path / "started").exists(), server.output()
    unloaded = unload(server, "slow")
    (tmp_path / "release").touch()
    client.join()

    assert unloaded.status_code == 200
    assert answers[0].status_code == 200 and answers[0].json() == {"predictions": ["finished"]}
    assert server.post("/api/predict/slow", json={}, headers=AUTH).status_code == 404


def test_a_python_pool_needs_the_handler_in_the_load_body(start_pool, tmp_path):
    server = start_pool(processor="python", name="handlers-missing")

    missing = load(server, "h")
    absent_file = load(server, "h", handler=str(tmp_path / "nowhere.py"))

    assert missing.status_code == 400 and "parameters.handler is required" in missing.json()["error"]
    assert absent_file.status_code == 400 and absent_file.json()["error"].startswith("parameters.handler: ")


def test_an_xgboost_pool_loads_and_serves_a_booster(start_pool, tmp_path):
    import xgboost

    features, labels = load_iris(return_X_y=True)
    booster = xgboost.train({"objective": "multi:softmax", "num_class": 3, "max_depth": 2},
                            xgboost.DMatrix(features, labels), 5)
    booster.save_model(str(tmp_path / "model.json"))
    server = start_pool(processor="xgboost", name="boosters")

    loaded = load(server, "iris-xgb", model_dir=str(tmp_path))
    answer = server.post("/v1/models/iris-xgb:predict", json=V1_BODY, headers=AUTH)

    assert loaded.status_code == 200, loaded.text
    assert answer.status_code == 200 and answer.json() == {"predictions": [float(SETOSA)]}, answer.text
    assert report(server)["models"][0]["state"] == "READY"


@pytest.fixture
def model_site(forest_dir):
    """The forest model served over HTTP on loopback, as an object store would serve it."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(forest_dir))
    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{site.server_address[1]}"
    site.shutdown()
    site.server_close()


def test_a_pool_fetches_a_model_uri_into_its_cache_under_the_fetch_policy(start_pool, model_site, tmp_path):
    server = start_pool(name="fetching", env={"FERRY_FETCH_ALLOWED_NETWORKS": "127.0.0.0/8",
                                              "FERRY_MODEL_CACHE_DIR": str(tmp_path / "cache")})

    loaded = load(server, "fetched", model_uri=f"{model_site}/model.joblib", version="2")
    answer = server.post("/v1/models/fetched:predict", json=V1_BODY, headers=AUTH)
    again = load(server, "fetched", model_uri=f"{model_site}/model.joblib", version="2")

    assert loaded.status_code == 200, loaded.text
    assert answer.status_code == 200 and answer.json() == {"predictions": [SETOSA]}
    assert again.status_code == 200 and again.json() == loaded.json()
    assert list((tmp_path / "cache").rglob("model.joblib"))


def test_a_model_uri_the_policy_refuses_answers_400_naming_it(pool, model_site, forest_dir):
    loopback = load(pool, "refused", model_uri=f"{model_site}/model.joblib")  # loopback not allowed here
    local = load(pool, "local", model_uri=f"file://{forest_dir}/model.joblib")
    both = load(pool, "both", model_uri=f"{model_site}/model.joblib", model_dir=str(forest_dir))

    assert loopback.status_code == 400 and loopback.json()["error"].startswith("parameters.model_uri: could not fetch")
    assert local.status_code == 400 and "parameters.model_uri must be a URL" in local.json()["error"]
    assert both.status_code == 400 and "not both" in both.json()["error"]


@pytest.mark.parametrize("option", [["--model-dir", "/models/m"], ["--handler", "/code/app.py"]])
def test_a_pool_refuses_a_model_on_its_command_line(option):
    result = subprocess.run(
        [sys.executable, "-m", "processors.modelserver", "--pool", "--model-name", "p", "--processor", "sklearn",
         *option], capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2],
    )

    assert result.returncode == 2
    assert f"{option[0]}: not with --pool" in result.stderr


@pytest.mark.parametrize("environ, named", [
    ({"FERRY_FETCH_ALLOWED_NETWORKS": "10.0.0.0/8,not-a-network"}, "FERRY_FETCH_ALLOWED_NETWORKS: 'not-a-network'"),
    ({"FERRY_FETCH_MAX_BYTES": "lots"}, "FERRY_FETCH_MAX_BYTES: 'lots' is not a number"),
    ({"FERRY_FETCH_TIMEOUT_SECONDS": "-1"}, "FERRY_FETCH_TIMEOUT_SECONDS must be positive"),
])
def test_the_fetch_settings_of_a_pool_name_the_variable_that_is_wrong(environ, named):
    from processors.modelserver.pool import fetch_settings

    with pytest.raises(ValueError, match=named):
        fetch_settings(environ)


def test_the_fetch_settings_of_a_pool_come_from_its_environment():
    from processors.modelserver.pool import fetch_settings

    settings = fetch_settings({"FERRY_FETCH_ALLOWED_NETWORKS": "10.1.0.0/16, 192.168.0.0/24",
                               "FERRY_FETCH_MAX_BYTES": "1000", "FERRY_FETCH_TIMEOUT_SECONDS": "2.5",
                               "FERRY_MODEL_CACHE_DIR": "/cache"})

    assert settings == {"cache_dir": "/cache", "allowed_networks": ["10.1.0.0/16", "192.168.0.0/24"],
                        "max_bytes": 1000, "timeout_seconds": 2.5}
