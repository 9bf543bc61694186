# One image for ingest, scoring, alerts and the CLI: `dvcpulse serve ingest|scoring|alerts`.
# Stage 1 installs exactly what uv.lock pins; stage 2 carries only the result.
FROM python:3.11-slim-bookworm AS build
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11
WORKDIR /app
# Dependencies first (cached while only the code changes), from the lock file, no dev tools.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY shared ./shared
COPY services ./services
COPY cli ./cli
COPY config ./config
COPY grafana ./grafana
RUN uv sync --frozen --no-dev

FROM python:3.11-slim-bookworm AS runtime
# The project is installed editable in /app so the shipped config/ sits where settings look.
RUN useradd --system --uid 10001 --home /app dvcpulse \
    && mkdir -p /data && chown dvcpulse /data
COPY --from=build --chown=dvcpulse /app /app
WORKDIR /app
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DVCPULSE_HOST=0.0.0.0 \
    DVCPULSE_DATA_DIR=/data
USER dvcpulse
VOLUME ["/data"]
EXPOSE 8001 8002 8003
ENTRYPOINT ["dvcpulse"]
CMD ["--help"]
