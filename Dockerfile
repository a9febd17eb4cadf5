# mars-impacts: the prediction service (and the `impacts` CLI) in a slim image, run as a non-root user.
#   docker build -t mars-impacts .
#   docker run -p 8000:8000 -v $PWD/runs/unet/bundle:/model:ro -v $PWD/review:/data mars-impacts
#   make image        # the same with podman, from a local Debian base when no registry answers (.ci/image.sh)
#
# BASE_IMAGE: any image with Python 3.11 as `python3` and its venv module, e.g. the public
# python:3.11-slim (default) or the Debian bookworm file system that .ci/image.sh makes with debootstrap.
# A base without the venv module gets it with apt-get.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# Everything runs from the virtualenv in /opt/venv, whichever python the base has on PATH.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH \
    TF_CPP_MIN_LOG_LEVEL=2 IMPACTS_MODEL_PATH=/model \
    IMPACTS_REVIEW_DB_URL=sqlite:////data/review.db \
    HEALTHCHECK_URL=http://127.0.0.1:8000/readyz

# 1. Interpreter, virtualenv and the unprivileged user; rarely changes.
RUN if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
 && python3 -m venv /opt/venv \
 && groupadd --gid 10001 impacts \
 && useradd --uid 10001 --gid impacts --create-home --no-log-init --shell /usr/sbin/nologin impacts \
 && mkdir /data && chown impacts:impacts /data

# For local builds only (.ci/image.sh mounts both on /mnt): a folder of wheels kept on the building
# machine, so that TensorFlow is downloaded once (pip's HTTP cache is no help behind proxies that
# mark downloads uncacheable), and the machine's CA bundle, for networks that inspect TLS.
# Left empty (docker build), pip downloads everything, keeps no cache and trusts its own CAs.
ARG BUILD_WHEELS=
ARG BUILD_CA_BUNDLE=

# 2. Dependencies (the TensorFlow wheels are most of the build): from pyproject.toml alone, so that
# this layer is reused while only the code changes. The build backend is installed too, so that
# step 3 needs no network.
WORKDIR /app
COPY pyproject.toml ./
RUN set -e; \
    set -- --no-cache-dir; \
    if [ -n "$BUILD_CA_BUNDLE" ]; then set -- "$@" "--cert=$BUILD_CA_BUNDLE"; fi; \
    python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb')); print('\n'.join(['pip'] + p['build-system']['requires'] + p['project']['dependencies']))" >/tmp/requirements.txt; \
    if [ -n "$BUILD_WHEELS" ]; then \
        pip download "$@" --find-links "$BUILD_WHEELS" --dest "$BUILD_WHEELS" -r /tmp/requirements.txt; \
        set -- "$@" --no-index --find-links "$BUILD_WHEELS"; \
    fi; \
    pip install "$@" --upgrade -r /tmp/requirements.txt; \
    rm /tmp/requirements.txt

# 3. The code.
COPY README.md ./
COPY impacts ./impacts
COPY tiling ./tiling
COPY training ./training
COPY service ./service
COPY configs ./configs
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
 && rm -rf build ./*.egg-info

# The review store (SQLite by default; IMPACTS_REVIEW_DB_URL=postgresql+psycopg://... for several replicas).
VOLUME /data
# Numeric, so that runtimes can check it is not root (Kubernetes runAsNonRoot).
USER 10001:10001
EXPOSE 8000
# HEALTHCHECK_URL: set it too when the command serves on another port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['HEALTHCHECK_URL'], timeout=4)"]
CMD ["impacts", "serve", "--model", "/model", "--host", "0.0.0.0", "--port", "8000"]
