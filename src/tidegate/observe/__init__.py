"""What tidegate tells its operators: Prometheus metrics (metrics.py), the request log
(requestlog.py), and the per-request trace the two share (trace.py). Imports nothing else of
tidegate but config, so every layer may record into it."""
