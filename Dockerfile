# One image for the roles of the project, selected by the command the chart gives each:
#   symbol-proxy serve ...        the cache proxy (injected sidecar, cluster cache)
#   symbol-operator run ...       the operator
#   symbol-operator webhook ...   the sidecar injection webhook
#   symbol-service serve ...      the publishing service (the chart, publishing.enabled)
# Build: docker build -t registry.example.com/symbol-operator:0.1.0 .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sidecar sidecar
COPY operator operator
COPY service service
COPY publish publish
RUN python -m venv /opt/symbol-operator \
 && /opt/symbol-operator/bin/pip install --no-cache-dir '.[operator,cloud]'

FROM python:3.11-slim
COPY --from=build /opt/symbol-operator /opt/symbol-operator
ENV PATH=/opt/symbol-operator/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The fixed non-root user of the chart's securityContext (runAsUser: 10001).
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin symbols
USER 10001
WORKDIR /tmp
EXPOSE 8080 9090 9443
CMD ["symbol-proxy", "serve", "--host", "0.0.0.0"]
