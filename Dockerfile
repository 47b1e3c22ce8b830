# syntax=docker/dockerfile:1
# One image for every role of the platform: the Dagster code server (default command), the
# webserver, the daemon, the Celery workers, `market-data stream`, `market-data serve` and
# `market-data metrics`.
#
# Stage 1 builds wheels of the project and of every dependency, pinned by constraints.txt (the
# same pins CI and the README's quick start install), so the image is reproducible.
# Stage 2 installs those wheels only (--no-index: nothing is fetched or compiled there), runs as
# an unprivileged user and carries no compiler, no source tree and no wheel cache.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY market_assets ./market_assets
COPY alpaca_sim ./alpaca_sim
RUN pip wheel --wheel-dir /wheels --constraint constraints.txt .

FROM ${PYTHON_IMAGE} AS runtime
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    DAGSTER_HOME=/opt/dagster/home \
    DAGSTER_STORAGE_DIR=/opt/dagster/home/storage \
    MARKET_DATA_HOME=/opt/dagster/data
RUN groupadd --system --gid 10001 market \
    && useradd --system --uid 10001 --gid market --home-dir /opt/dagster --shell /usr/sbin/nologin market
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    --mount=type=bind,source=constraints.txt,target=/tmp/constraints.txt \
    pip install --no-index --find-links /wheels --constraint /tmp/constraints.txt market_assets
COPY deploy/dagster/dagster.yaml deploy/dagster/workspace.yaml deploy/celery/celery.yaml ${DAGSTER_HOME}/
RUN mkdir -p ${DAGSTER_STORAGE_DIR} ${MARKET_DATA_HOME} && chown -R market:market /opt/dagster
WORKDIR /opt/dagster
USER market:market

EXPOSE 3000 4000 8081 8765 9464
# The default role's check; docker-compose.yml sets each service's own.
HEALTHCHECK --interval=15s --timeout=10s --start-period=60s --retries=3 \
    CMD ["dagster", "api", "grpc-health-check", "--host", "127.0.0.1", "--port", "4000"]
CMD ["dagster", "code-server", "start", "--host", "0.0.0.0", "--port", "4000", \
     "--module-name", "market_assets.definitions", "--location-name", "market_assets"]
