# syntax=docker/dockerfile:1
#
# Production image: docker build -t veix .
# The builder turns the project into a wheel and collects the wheels of every
# dependency; the runtime stage installs them offline into /opt/venv, so it
# needs neither the source tree nor a compiler.

FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

# pyproject.toml names README.md as the long description, so the build needs it.
COPY pyproject.toml README.md ./
COPY veix ./veix
RUN python -m pip wheel --wheel-dir /wheels .


FROM python:3.11-slim AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    VEIX_ENV=production

RUN groupadd --gid 10001 veix \
    && useradd --uid 10001 --gid veix --create-home --home-dir /home/veix \
        --shell /usr/sbin/nologin veix

# The wheels are bind-mounted from the builder, so they add no layer here.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-index --find-links=/wheels veix \
    && /opt/venv/bin/python -c "import veix"

WORKDIR /home/veix
USER 10001:10001

EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["veix", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
