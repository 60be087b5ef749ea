"""The model server: `predictor` (decode, forward, encode; no HTTP), `drift_monitor` (the
sliding window behind `gan_input_drift_score`), `output_stats` (the output feature means
behind `gan_output_feature`) and `drift_worker` (the thread both run on), `metrics`
(Prometheus), `protocol` (v1 and Open Inference Protocol v2 bodies), `app` (the Starlette
endpoints), `http` (uvicorn, in-flight slots, worker threads) and `server` (`ganops serve`:
arguments, loading, signals). `config` holds `ServeConfig`.

Nothing is imported here, so reading the config does not load torch.
"""
