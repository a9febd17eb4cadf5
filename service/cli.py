"""``impacts serve``: the prediction service on uvicorn (shared options: :mod:`impacts.options`)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from impacts.options import model_option, workers_option


def check_settings() -> None:
    """Read the service's and the review's settings from the environment once.

    Raises:
        ConfigError: A variable is invalid (one line naming the variable).
    """
    from pydantic import ValidationError

    from impacts.config import config_error
    from service.review.settings import ReviewSettings
    from service.settings import Settings

    for model, prefix in ((Settings, "IMPACTS_"), (ReviewSettings, "IMPACTS_REVIEW_")):
        try:
            model()
        except ValidationError as exc:
            names = {f: f"{prefix}{f.upper()}" for f in model.model_fields}
            raise config_error(
                exc, model, f"service settings ({prefix}* environment variables)", "fix or unset it", names
            ) from exc


@click.command()
@model_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@workers_option("uvicorn worker processes (each loads the model).", default=1)
@click.option(
    "--forwarded-allow-ips",
    envvar="IMPACTS_FORWARDED_ALLOW_IPS",
    default="",
    show_default=True,
    help="Reverse proxies (comma-separated addresses) whose X-Forwarded-For/-Proto are trusted "
    "(env IMPACTS_FORWARDED_ALLOW_IPS); empty: none, the client is the TCP peer.",
)
def serve(model_path: Path, host: str, port: int, workers: int, forwarded_allow_ips: str) -> None:
    """Serve POST /v1/predict, /healthz, /readyz, /metrics, /v1/model and the review UI at /review.

    Settings: IMPACTS_* variables (service/settings.py) and IMPACTS_REVIEW_* (the review
    store, e.g. IMPACTS_REVIEW_DB_URL=sqlite:///review.db; service/review/settings.py).
    Proxy headers are ignored unless --forwarded-allow-ips names the proxies (uvicorn alone
    would trust them from 127.0.0.1, so anyone on the host could pick their address).
    """
    import uvicorn

    from impacts.errors import BundleError

    if not (model_path / "model.keras").is_file() and not (model_path / "bundle" / "model.keras").is_file():
        raise BundleError(f"{model_path} is not a model bundle; pass RUN/bundle written by `impacts train`")
    os.environ["IMPACTS_MODEL_PATH"] = str(model_path)
    os.environ["IMPACTS_FORWARDED_ALLOW_IPS"] = forwarded_allow_ips
    check_settings()  # a bad IMPACTS_* variable is one line here, not a traceback in uvicorn
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    click.echo(
        f"serving {model_path} on http://{host}:{port} (API docs: http://{host}:{port}/docs, "
        f"review UI: http://{host}:{port}/review)"
    )
    proxies = forwarded_allow_ips.strip()
    uvicorn.run(
        "service.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or None,
    )
