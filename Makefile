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

# all six from scratch as shipped (docs/models.md): the five classifiers, then the detector with
# small lesions weighed up, fine-tuned three times on the lesions it misses (15, 22, 22 passes).
# Hours on a CPU; tools/gpu_detector.sh runs the detector's part on a lent GPU.
SEG := --task seg --cases 500 --test-cases 100 --seed 7 --workers $$(nproc)
train: setup
	$(PY) -m napari_breastmri.cli train --task subtype,pcr,pcr_pair,lymph_node,screening --cases 360 \
		--val-cases 160 --test-cases 100 --seed 7 --workers $$(nproc) --out napari_breastmri/models/weights
	$(PY) -m napari_breastmri.cli train $(SEG) --lesion-sampling sized --epochs 90 --out /tmp/breastmri-seg/0
	$(PY) -m napari_breastmri.cli train $(SEG) --lesion-sampling missed --epochs 15 \
		--init /tmp/breastmri-seg/0/demo-lesion-seg --out /tmp/breastmri-seg/1
	$(PY) -m napari_breastmri.cli train $(SEG) --lesion-sampling missed --epochs 22 \
		--init /tmp/breastmri-seg/1/demo-lesion-seg --out /tmp/breastmri-seg/2
	$(PY) -m napari_breastmri.cli train $(SEG) --lesion-sampling missed --epochs 22 \
		--init /tmp/breastmri-seg/2/demo-lesion-seg --out napari_breastmri/models/weights

clean:
	rm -rf $(OUT) .pytest_cache
