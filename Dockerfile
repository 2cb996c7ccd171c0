# Feedhouse: one image for every process (gateway, worker, sink, migrate); the command picks.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md ./
COPY feedhouse ./feedhouse
COPY gateway ./gateway
COPY streams ./streams
COPY avro ./avro
COPY clickhouse ./clickhouse
COPY sink ./sink
COPY read ./read
COPY privacy ./privacy
COPY app ./app
COPY audiences ./audiences
RUN pip install .
USER nobody
ENTRYPOINT ["feedhouse"]
CMD ["--help"]
