"""One node's rank for tests/model/test_multinode.py, run by torchrun (env:// rendezvous).

It trains through the same calls the train step makes (`distributed.setup` from torchrun's
environment, `TrainSession`, the durable checkpoint) and saves this rank's final state, so
the test can compare the ranks' weights.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from ganops.model import distributed
from ganops.model.config import TrainConfig, preset
from ganops.model.tracking import NullTracker
from ganops.model.train import TrainSession


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--durable", required=True)
    parser.add_argument("--steps", type=int, required=True)
    args = parser.parse_args()
    info = distributed.info_from_env(os.environ)
    cpu = torch.device("cpu")
    distributed.setup(info, cpu)
    net = preset("tiny", "cut", ngf=4, ndf=4, n_blocks=1, n_layers_d=2, num_patches=8,
                 netf_nc=8, nce_layers=(0, 4, 7, 10))  # fmt: skip
    cfg = TrainConfig(net=net, steps=args.steps, batch_size=2, checkpoint_every=2, log_every=1,
                      amp=False, threads=1)  # fmt: skip
    try:
        # Each node has its own folder (as each pod would); the checkpoint is shared durably.
        out = args.out / f"node{info.rank}"
        session = TrainSession(
            cfg, args.data, cpu, NullTracker(), out, durable_url=args.durable, resume=True
        )
        result = session.run()
        torch.save(session.trainer.state_dict(), args.out / f"rank{info.rank}.pt")
        meta = {"resumed_from": result.resumed_from, "world": info.world_size}
        (args.out / f"rank{info.rank}.json").write_text(json.dumps(meta))
    finally:
        distributed.teardown()


if __name__ == "__main__":
    main()
