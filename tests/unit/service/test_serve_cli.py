"""``impacts serve``: settings checked before uvicorn starts, proxy headers off unless configured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import uvicorn
from click.testing import CliRunner

from impacts.cli import main


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    (tmp_path / "model.keras").touch()
    return tmp_path


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    for name in ("IMPACTS_MODEL_PATH", "IMPACTS_FORWARDED_ALLOW_IPS"):  # serve sets them: restored after
        monkeypatch.setenv(name, "")
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: calls.append(kwargs))
    return calls


def test_a_bad_setting_is_one_line_naming_the_variable(
    bundle_dir: Path, started: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMPACTS_REVIEW_LOGIN_FAILURES_MAX", "zero")
    result = CliRunner().invoke(main, ["serve", "--model", str(bundle_dir)])
    assert result.exit_code != 0 and started == []
    (line,) = [x for x in result.output.splitlines() if x.startswith("Error")]
    assert "IMPACTS_REVIEW_LOGIN_FAILURES_MAX" in line and "Traceback" not in result.output


def test_proxy_headers_are_trusted_only_from_named_proxies(
    bundle_dir: Path, started: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IMPACTS_FORWARDED_ALLOW_IPS", raising=False)
    assert CliRunner().invoke(main, ["serve", "--model", str(bundle_dir)]).exit_code == 0
    assert started[-1]["proxy_headers"] is False
    monkeypatch.setenv("IMPACTS_FORWARDED_ALLOW_IPS", "10.0.0.5")
    assert CliRunner().invoke(main, ["serve", "--model", str(bundle_dir)]).exit_code == 0
    assert (started[-1]["proxy_headers"], started[-1]["forwarded_allow_ips"]) == (True, "10.0.0.5")
