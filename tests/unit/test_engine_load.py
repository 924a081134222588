"""contracts/engine_load.py: an engine's /metrics text read into its load, vLLM's and SGLang's names."""

from contracts.engine_load import EngineLoad, engine_load_key, parse_metrics

VLLM = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="chat"} 2.0
vllm:num_requests_waiting{engine="0",model_name="chat"} 5.0
vllm:kv_cache_usage_perc{engine="0",model_name="chat"} 0.25
vllm:prefix_cache_queries_total{engine="0",model_name="chat"} 1000.0
vllm:prefix_cache_hits_total{engine="0",model_name="chat"} 600.0
vllm:generation_tokens_total{engine="0",model_name="chat"} 321.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="chat"} 1.5
vllm:time_to_first_token_seconds_count{engine="0",model_name="chat"} 10.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.001",model_name="chat"} 0.0
vllm:inter_token_latency_seconds_sum{engine="0",model_name="chat"} 3.0
vllm:inter_token_latency_seconds_count{engine="0",model_name="chat"} 300.0
vllm:prompt_tokens_total{engine="0",model_name="chat"} 4000.0
"""


def test_vllm_metrics_are_read_into_the_load():
    load = parse_metrics(VLLM, at=12.0)
    assert (load.running, load.waiting, load.kv_cache) == (2.0, 5.0, 0.25)
    assert (load.prefix_queries, load.prefix_hits) == (1000.0, 600.0)
    assert (load.generation_tokens, load.prompt_tokens) == (321.0, 4000.0)
    assert (load.ttft_sum, load.ttft_count, load.tpot_sum, load.tpot_count) == (1.5, 10.0, 3.0, 300.0)
    assert load.at == 12.0


def test_series_are_summed_and_older_names_read():
    text = ('vllm:num_requests_waiting{engine="0"} 1\nvllm:num_requests_waiting{engine="1"} 2\n'
            "vllm:gpu_cache_usage_perc 0.5\n")
    load = parse_metrics(text)
    assert load.waiting == 3.0 and load.kv_cache == 0.5


def test_sglang_names_and_what_is_missing_reads_zero():
    load = parse_metrics('sglang:num_queue_reqs{model_name="m"} 4\nsglang:num_running_reqs 1\nsglang:token_usage 0.1\n')
    assert (load.waiting, load.running, load.kv_cache, load.generation_tokens) == (4.0, 1.0, 0.1, 0.0)


def test_unparsable_lines_are_skipped():
    load = parse_metrics("vllm:num_requests_waiting NaN\nvllm:num_requests_running abc\ngarbage\n")
    assert load == EngineLoad()


def test_round_trip_through_json_and_the_key():
    load = parse_metrics(VLLM, at=5.0)
    assert EngineLoad.from_json(load.to_json()) == load
    assert engine_load_key("local", "chat") == "ferry:engine:local:chat"
