# syntax=docker/dockerfile:1
# The salepulse image: one image, every process (`worker`, `sink`, `db migrate`, `simulate`, ...) is a subcommand.
# Kafka and ClickHouse come from docker-compose.yml, so there is no Java here and no embedded broker is started.
#
#   docker build -t salepulse:local .
#   docker run --rm salepulse:local --help

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: compile anything that has no wheel, into a self-contained virtualenv --------------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/salepulse
ENV PATH=/opt/salepulse/bin:$PATH

WORKDIR /src
# Only what the package build needs (see [tool.setuptools] in pyproject.toml), so unrelated edits keep the cache.
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY schemas ./schemas
COPY consumers ./consumers
COPY deploy ./deploy
RUN pip install --upgrade pip setuptools wheel \
 && pip install . \
 && salepulse --help > /dev/null

# ---- runtime ----------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="salepulse" \
      org.opencontainers.image.description="Live demand sensing and personalization for flash-sale e-commerce" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PATH=/opt/salepulse/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SALEPULSE_STATE_DIR=/data \
    SALEPULSE_HTTP_HOST=0.0.0.0

COPY --from=build /opt/salepulse /opt/salepulse

# Non-root. /data is the state directory and the working directory (Faust keeps its `<app_id>-data` folder in the
# working directory); it exists and belongs to the app user, so a named volume mounted there inherits the owner.
RUN groupadd --system --gid 10001 salepulse \
 && useradd --system --uid 10001 --gid salepulse --home-dir /data --no-create-home --shell /usr/sbin/nologin salepulse \
 && mkdir -p /data \
 && chown salepulse:salepulse /data
USER 10001:10001
WORKDIR /data

EXPOSE 6066

ENTRYPOINT ["salepulse"]
CMD ["--help"]
