# Every target sets up what it needs (Debian packages, the venv) itself: see tools/setup_env.sh.
SHELL := /bin/bash
PY := .venv/bin/python
OUT ?= demo-output
export MPLBACKEND ?= Agg

.PHONY: setup demo test test-fast bench lint screenshots train clean

setup:
	@bash tools/setup_env.sh

# The main job: napari on the embedded synthetic case with the demo models; with no display,
# the same analysis headless, writing its outputs to $(OUT)/.
demo: setup
	@if [ -n "$$DISPLAY" ] || [ -n "$$WAYLAND_DISPLAY" ]; then \
		$(PY) -m napari_breastmri.cli view --demo; \
	else \
		echo "No display: running the same analysis headless into $(OUT)/"; \
		$(PY) -m napari_breastmri.cli analyze --demo --report --out $(OUT); \
	fi

# The whole suite: lint, import contracts, unit, integration, peers, and GUI tests in a real
# window under Xvfb. Fails on any failure and when no test ran (pytest exits 5).
test: setup
	.venv/bin/ruff check .
	.venv/bin/lint-imports
	xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) -m pytest -p no:cacheprovider --timeout=600 $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest tests/unit -q $(PYTEST_ARGS)

lint: setup
	.venv/bin/ruff check .
	.venv/bin/lint-imports

bench: setup
	xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) -m tests.benchmarks.run_all --out docs/benchmarks.md

screenshots: setup
	xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) -m tests.gui.screenshots --out docs/images

# all six from scratch, then the detector fine-tuned on the lesions it misses (docs/models.md)
train: setup
	$(PY) -m napari_breastmri.cli train --task all --cases 360 --val-cases 160 --test-cases 100 --seed 7 \
		--workers $$(nproc) --out napari_breastmri/models/weights
	$(PY) -m napari_breastmri.cli train --task seg --init napari_breastmri/models/weights/demo-lesion-seg \
		--lesion-sampling missed --epochs 12 --cases 300 --test-cases 100 --seed 7 \
		--out napari_breastmri/models/weights

clean:
	rm -rf $(OUT) .pytest_cache
