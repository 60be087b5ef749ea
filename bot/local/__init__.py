"""Embedded defaults for a laptop, and the demo: nothing here runs in a deployed bot.

- `shell`, `shell_view`, `shell_render`: the terminal chat (the transport without Slack);
- `slack`, `slack_api`: a Slack Web API on loopback (the shell's Slack, and the tests');
- `prometheus`, `embedded`: Debian's Prometheus and an MLflow UI on loopback;
- `demo`: `ganops demo`, the whole loop narrated.

Nothing is imported here: each tool loads only when it runs.
"""
