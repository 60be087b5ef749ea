"""The model server: `predictor` (decode, forward, encode; no HTTP), `drift_monitor` (the
sliding window behind `gan_input_drift_score`), `metrics` (Prometheus), `http` (the endpoints)
and `server` (`ganops serve`: arguments, loading, signals). `config` holds `ServeConfig`.

Nothing is imported here, so reading the config does not load torch.
"""
