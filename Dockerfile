# mars-impacts runtime image: the `impacts` CLI (the service entry point lands with the service issue).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY impacts ./impacts
COPY tiling ./tiling
COPY training ./training
COPY service ./service
COPY configs ./configs
RUN pip install --disable-pip-version-check . \
 && useradd --create-home --uid 10001 impacts
USER impacts
ENTRYPOINT ["impacts"]
CMD ["--help"]
