# mars-impacts: the prediction service (and the `impacts` CLI) in a slim image.
#   docker build -t mars-impacts .
#   docker run -p 8000:8000 -v $PWD/runs/unet/bundle:/model:ro -v $PWD/review:/data mars-impacts
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    TF_CPP_MIN_LOG_LEVEL=2 IMPACTS_MODEL_PATH=/model \
    IMPACTS_REVIEW_DB_URL=sqlite:////data/review.db
WORKDIR /app
COPY pyproject.toml README.md ./
COPY impacts ./impacts
COPY tiling ./tiling
COPY training ./training
COPY service ./service
COPY configs ./configs
RUN pip install --disable-pip-version-check . \
 && useradd --create-home --uid 10001 impacts \
 && mkdir /data && chown impacts /data
# The review store (SQLite by default; IMPACTS_REVIEW_DB_URL=postgresql+psycopg://... for several replicas).
VOLUME /data
USER impacts
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4).status == 200 else 1)"
CMD ["uvicorn", "service.app:app_from_env", "--factory", "--host", "0.0.0.0", "--port", "8000"]
