# syntax=docker/dockerfile:1
# One image for every asyncgw service:
#   docker run asyncgw:0.1.0 gateway --port 8080
#   docker run asyncgw:0.1.0 worker --api iris
#   docker run asyncgw:0.1.0 scaler
# The example handlers are baked in under /app/examples; bake your own the same way in a derived
# image (FROM asyncgw:0.1.0 + COPY), or mount them and point ASYNCGW_CONFIG at their API file.
# See docs/deploy.md.

# Build stage: install asyncgw and its dependencies into a virtualenv that is copied as a whole.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/asyncgw
WORKDIR /src
COPY pyproject.toml README.md ./
COPY asyncgw ./asyncgw
COPY worker ./worker
COPY scaler ./scaler
RUN /opt/asyncgw/bin/pip install .

# Runtime stage: the virtualenv, the example handlers, a non-root user. No compiler, no sources.
FROM python:3.11-slim
ENV PATH=/opt/asyncgw/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ASYNCGW_CONFIG=/app/examples/asyncgw.yaml \
    ASYNCGW_DATA_DIR=/var/lib/asyncgw
RUN groupadd --system --gid 10001 asyncgw \
 && useradd --system --uid 10001 --gid asyncgw --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin asyncgw \
 && mkdir -p /var/lib/asyncgw \
 && chown asyncgw:asyncgw /var/lib/asyncgw
COPY --from=build /opt/asyncgw /opt/asyncgw
WORKDIR /app
# Owned by root and read-only for the service user: handlers cannot be changed at run time.
COPY examples/ /app/examples/
# A numeric user, so that Kubernetes can check runAsNonRoot.
USER 10001:10001
# 8080: the gateway's HTTP API; 9090: /metrics of the workers and the scaler.
EXPOSE 8080 9090
ENTRYPOINT ["asyncgw"]
CMD ["--help"]
