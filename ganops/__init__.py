"""ganops: Slack ops for continuous training of an image style-transfer GAN on Kubeflow.

One distribution, one namespace: `ganops.bot` (the Slack bot; never imports torch),
`ganops.pipeline` (the Kubeflow Pipelines CT pipeline, launchers and deployers) and
`ganops.model` (the GAN, its training, evaluation and serving; imports nothing of ours).
The sub-packages live in the repository's top-level `bot/`, `pipeline/` and `model/` folders;
`ganops/` maps them into this namespace, so nothing named `bot`, `pipeline` or `model` is
installed at the top level of an environment.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ganops")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
