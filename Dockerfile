# syntax=docker/dockerfile:1
# newswatch in a container: the slim Python image, no build tools in the final stage, an
# unprivileged user, the config in /config and the database in /data (both volumes), and
# /healthz + /metrics on port 9108.
#
#   docker build -t newswatch .
#   docker run -d --name newswatch -v newswatch-config:/config -v newswatch-data:/data \
#       -e NEWSWATCH_TELEGRAM_TOKEN=123456:ABC... -p 127.0.0.1:9108:9108 newswatch
#
# The image's /config/newswatch.yaml is the shipped config with the database in /data and
# the HTTP endpoint on all of the container's interfaces; a named volume starts with that
# copy, a bind mount replaces it (see README, "Run on a server").

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY newswatch ./newswatch
COPY alerts ./alerts
COPY crawler ./crawler
COPY config ./config
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[postgres]'

FROM python:${PYTHON_VERSION}-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NEWSWATCH_CONFIG=/config/newswatch.yaml \
    MPLCONFIGDIR=/tmp/matplotlib
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home --shell /usr/sbin/nologin newswatch
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels 'newswatch[postgres]' \
    && rm -rf /wheels
COPY config/newswatch.yaml /config/newswatch.yaml
RUN sed -i 's|^  path: newswatch.db$|  path: /data/newswatch.db|' /config/newswatch.yaml \
    && printf '\nhttp:\n  listen: "0.0.0.0:9108"\n' >> /config/newswatch.yaml \
    && newswatch check-config > /dev/null \
    && mkdir -p /data \
    && chown newswatch:newswatch /data
USER newswatch
WORKDIR /data
VOLUME ["/config", "/data"]
EXPOSE 9108
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=4)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["newswatch"]
CMD ["run", "--log-format", "json"]
