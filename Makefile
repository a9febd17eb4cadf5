# mars-impacts: `make demo` runs the pipeline on synthetic scenes, `make test` runs every check.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
DEMO := demo
DEMO_PORT ?= 8000
DEMO_SERVE ?= 1
DEMO_DB := sqlite:///$(DEMO)/review.db
DEMO_USER := demo
DEMO_PASSWORD := mars-demo-review
PIP_FLAGS ?= --disable-pip-version-check

.PHONY: install dev horovod postgres browser image demo test lint typecheck pytest bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_FLAGS) -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_FLAGS) -q -e '.[dev]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
dev: $(VENV)/.installed-dev

## horovod: OpenMPI (apt) and Horovod 0.28.1 built against this TensorFlow (about 4 min once,
## then from a wheel cached in ~/.cache/mars-impacts); GPU nodes: HOROVOD_GPU_OPERATIONS=NCCL
horovod: install
	VENV=$(VENV) .ci/build-horovod.sh

## browser: Debian's headless Chromium + chromium-driver (same version) for tests/e2e (apt, ~120 MB once)
browser: dev
	.ci/browser.sh

## postgres: PostgreSQL on 127.0.0.1:54329 for the review-store tests (apt-installed when absent,
## cluster in /var/cache/mars-impacts/pg or ~/.cache/mars-impacts/pg); prints its URL
postgres:
	@.ci/postgres.sh

## image: the service image localhost/mars-impacts:latest with podman (apt-installed when absent) or
## docker; from a local Debian base (debootstrap) when no registry answers (about 4 min once, then
## seconds); where no container can run it says why and tests/e2e/test_container.py skips
image:
	.ci/image.sh

## demo: synthetic scenes -> patches -> U-Net with one mining round -> evaluation -> predictions
## -> review queue; ends serving the model and the review UI (about 10 min on 2 cores, measured 2026-12-01)
demo: install
	$(BIN)/impacts synth --out $(DEMO)/scenes --count 6 --seed 7
	$(BIN)/impacts tile --scenes $(DEMO)/scenes --out $(DEMO)/patches --config configs/tile.yaml
	$(BIN)/impacts train --config configs/unet-demo.yaml --data $(DEMO)/patches --scenes $(DEMO)/scenes --out $(DEMO)/run
	$(BIN)/impacts evaluate --model $(DEMO)/run/bundle --data $(DEMO)/patches --split test --out $(DEMO)/eval
	$(BIN)/impacts evaluate --model $(DEMO)/run/bundle --data $(DEMO)/patches --split test --scenes $(DEMO)/scenes \
	  --out $(DEMO)/eval-scenes > $(DEMO)/eval-scenes.txt && cat $(DEMO)/eval-scenes.txt
	$(BIN)/impacts predict --model $(DEMO)/run/bundle $(DEMO)/scenes --out $(DEMO)/predictions
	$(BIN)/impacts review import $(DEMO)/predictions --scenes $(DEMO)/scenes --db $(DEMO_DB)
	$(BIN)/impacts review users list --db $(DEMO_DB) | grep -qx $(DEMO_USER) || \
	  printf '%s\n' '$(DEMO_PASSWORD)' | $(BIN)/impacts review users add $(DEMO_USER) --password-stdin --db $(DEMO_DB)
	@echo "demo done:"
	@echo "  run report  $(DEMO)/run/report.json  (per round: mined patches, val/test metrics)"
	@echo "  figures     $(DEMO)/run/loss_curve.png $(DEMO)/run/rounds.png"
	@echo "  evaluation  $(DEMO)/eval/metrics.json $(DEMO)/eval/pr_curve.png $(DEMO)/eval/grid_chosen.png $(DEMO)/eval/grid_worst.png"
	@echo "  whole scenes $(DEMO)/eval-scenes/metrics.json $(DEMO)/eval-scenes/scene_curve.png $(DEMO)/eval-scenes/quicklooks/"
	@echo "  test scene, whole:" && grep '^whole scenes' $(DEMO)/eval-scenes.txt
	@echo "  model       $(DEMO)/run/bundle"
	@echo "  detections  $(DEMO)/predictions/*_detections.geojson, *_prob.tif (queued for review in $(DEMO)/review.db)"
ifneq ($(DEMO_SERVE),0)
	@echo "serving the demo model and the review UI (Ctrl-C stops it; make demo DEMO_SERVE=0 skips this step):"
	@echo "  review UI   http://127.0.0.1:$(DEMO_PORT)/review   login: $(DEMO_USER) / $(DEMO_PASSWORD)"
	@echo "  API         http://127.0.0.1:$(DEMO_PORT)/docs"
	IMPACTS_REVIEW_DB_URL=$(DEMO_DB) $(BIN)/impacts serve --model $(DEMO)/run/bundle --host 127.0.0.1 --port $(DEMO_PORT)
endif

## test: lint, type check and the whole test suite
test: lint typecheck pytest

lint: dev
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: dev
	$(BIN)/mypy

pytest: dev horovod postgres browser image
	@# The test PostgreSQL (loopback only) is started for the run and stopped after it.
	url=$$(.ci/postgres.sh) && rc=0 && IMPACTS_TEST_POSTGRES_URL=$$url IMPACTS_REQUIRE_POSTGRES=1 \
	  IMPACTS_REQUIRE_HOROVOD=1 IMPACTS_REQUIRE_BROWSER=1 $(BIN)/pytest -q || rc=$$?; \
	  .ci/postgres.sh stop >/dev/null; exit $$rc

## bench: figures in the README (ratios measured side by side in one run)
bench: install horovod
	$(BIN)/python benchmarks/startup.py
	$(BIN)/python benchmarks/tiling.py
	$(BIN)/python benchmarks/input_pipeline.py
	$(BIN)/python benchmarks/quality.py
	$(BIN)/python benchmarks/predict_scene.py
	$(BIN)/python benchmarks/service.py
	$(BIN)/python benchmarks/hostile.py
	$(BIN)/python benchmarks/scaling.py

clean:
	rm -rf $(VENV) $(DEMO) .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info
