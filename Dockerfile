# syntax=docker/dockerfile:1
# Build: docker build -t tollgate .
# Run:   see docker-compose.yml (Tollgate + PostgreSQL + Redis).

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, so a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir app && touch app/__init__.py && pip install . && pip uninstall -y tollgate
COPY app ./app
RUN pip install --no-deps .
# tiktoken downloads its encodings on first use; fetch them at build time so the image
# works without internet. Air-gapped builds can COPY a pre-seeded cache here instead.
ENV TIKTOKEN_CACHE_DIR=/opt/tiktoken
RUN python -c "import tiktoken; tiktoken.get_encoding('o200k_base'); tiktoken.get_encoding('cl100k_base')"

FROM python:3.11-slim AS runtime
RUN groupadd --system tollgate && useradd --system --gid tollgate --home-dir /app --shell /usr/sbin/nologin tollgate
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/tiktoken /opt/tiktoken
WORKDIR /app
COPY alembic.ini ./
COPY migrations ./migrations
RUN mkdir -p /app/.tollgate && chown -R tollgate:tollgate /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TIKTOKEN_CACHE_DIR=/opt/tiktoken \
    TOLLGATE_HOST=0.0.0.0 \
    TOLLGATE_PORT=8000
USER tollgate
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
# `tollgate serve` applies migrations (alembic upgrade head), then starts the server.
ENTRYPOINT ["tollgate"]
CMD ["serve"]
