# syntax=docker/dockerfile:1.7
# Two images from one file:
#   docker build --target bot     -t REGISTRY/ganops-bot:TAG .      (Slack bot: no torch)
#   docker build --target trainer -t REGISTRY/ganops-trainer:TAG .  (training steps, serving)
#   docker build --target steps   -t REGISTRY/ganops-steps:TAG .    (the other steps: no torch)
# Base images are pinned by tag and digest-free on purpose only where noted; bump them together.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# ---- wheels: build the project wheel once, shared by both targets ----------------------
FROM ${PYTHON_IMAGE} AS wheels
WORKDIR /src
RUN pip install --no-cache-dir build==1.2.2
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY pipeline ./pipeline
COPY model ./model
COPY ganops ./ganops
RUN python -m build --wheel --outdir /wheels .

# ---- bot: the Slack bot, launcher and deployer clients; no torch ----------------------
# mlflow-skinny only: set MLFLOW_TRACKING_URI to an MLflow server (the sqlite default needs
# full mlflow). Default command: Socket Mode, with /healthz and /metrics on 8081 for probes;
# `--http --port 3000` serves /slack/events (and those two) on 3000 instead.
FROM ${PYTHON_IMAGE} AS bot
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --create-home --uid 10001 ganops
COPY constraints.txt /tmp/constraints.txt
COPY --from=wheels /wheels /wheels
RUN pip install -c /tmp/constraints.txt /wheels/*.whl && rm -rf /wheels /tmp/constraints.txt
USER 10001
ENV GANOPS_STATE_DIR=/home/ganops/state
WORKDIR /home/ganops
EXPOSE 3000 8081
ENTRYPOINT ["ganops", "bot"]
CMD ["--health-port", "8081"]

# ---- steps: the pipeline steps that load no network; no torch -------------------------
# ingest, validate, the gate and finalize (pipeline/components.py SLIM_STEPS), set with
# GANOPS_STEPS_IMAGE: a small pull instead of the multi-GB CUDA wheels. The [steps] extra adds
# the object-store filesystems ingest reads data with. KFP gives the command; no entrypoint.
FROM ${PYTHON_IMAGE} AS steps
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --create-home --uid 10001 ganops
COPY constraints.txt /tmp/constraints.txt
COPY --from=wheels /wheels /wheels
RUN pip install -c /tmp/constraints.txt "$(ls /wheels/*.whl)[steps]" \
    && rm -rf /wheels /tmp/constraints.txt
USER 10001
WORKDIR /home/ganops

# ---- trainer: torch + CUDA; runs the pipeline steps and the model server --------------
# A slim Python base: PyPI's torch wheels bring their own CUDA and cuDNN (the nvidia-* wheels),
# so a CUDA base image would only put a second copy under them. The host needs the driver only.
FROM ${PYTHON_IMAGE} AS trainer
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
# torch.compile is on by default on CUDA, and compiles at run time: Triton builds its kernel
# launchers with a C compiler (CC, else gcc/clang), inductor's CPU backend with g++. libc6-dev
# is only a Recommends of gcc, and the launchers need its headers. Without these the trainer
# falls back to eager (model/compile_check.py) and says so on the run's card.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc g++ libc6-dev \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv && useradd --create-home --uid 10001 ganops
COPY constraints.txt /tmp/constraints.txt
COPY --from=wheels /wheels /wheels
RUN pip install -c /tmp/constraints.txt "$(ls /wheels/*.whl)[trainer]" \
    && rm -rf /wheels /tmp/constraints.txt
USER 10001
WORKDIR /home/ganops
# The default command serves the champion: `ganops serve` reads GANOPS_MODEL_URI and
# GANOPS_SERVE_HOST (a pod must listen on all interfaces); set MLFLOW_TRACKING_URI for models:/.
ENV GANOPS_MODEL_URI=models:/ganops-cut@champion GANOPS_SERVE_HOST=0.0.0.0
EXPOSE 8080
ENTRYPOINT ["ganops"]
CMD ["serve", "--port", "8080"]
