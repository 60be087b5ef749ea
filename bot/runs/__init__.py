"""A run's life in the channel.

- `record`: the bot's durable record of runs and of what it has posted (`runs`, `posts`);
- `start`: launch a run for `/retrain`, an alarm's Retrain now or the CLI, and post its message;
- `watch`: the job that follows every unsettled run and keeps its one message current;
- `results`: the results card once a run awaits approval.

Only the record is re-exported here: `start`, `watch` and `results` take the bot's services,
which are built from the record, so importing them from here would make a cycle.
"""

from __future__ import annotations

from ganops.bot.runs.record import RunBook, RunRow

__all__ = ["RunBook", "RunRow"]
