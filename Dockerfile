# The agent image: `kubectl-kdoctor agent` from this package, nothing else.
# Build: docker build -t ghcr.io/kubectl-kdoctor/agent:v$(python3 -c 'import kubectl_kdoctor;print(kubectl_kdoctor.__version__)') .
# Multi-stage: the build stage makes a venv; the final stage gets only that venv, runs as a
# non-root user, and has no compiler, pip or setuptools.

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY setup.cfg pyproject.toml README.md LICENSE ./
COPY kubectl_kdoctor ./kubectl_kdoctor
RUN python -m venv /opt/kdoctor \
 && /opt/kdoctor/bin/pip install . \
 && /opt/kdoctor/bin/pip uninstall -y pip setuptools wheel \
 && find /opt/kdoctor -name '__pycache__' -prune -exec rm -rf {} +

FROM python:3.11-slim-bookworm
RUN pip uninstall -y pip setuptools wheel 2>/dev/null || true \
 && groupadd --gid 65532 kdoctor \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin kdoctor
COPY --from=build /opt/kdoctor /opt/kdoctor
ENV PATH=/opt/kdoctor/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp
USER 65532:65532
EXPOSE 8080 8443
ENTRYPOINT ["kubectl-kdoctor", "agent"]
