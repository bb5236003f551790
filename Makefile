# timbre-lobes: set-up, tests and the CPU demo.
#   make demo   install what is missing, render the default corpus, train and evaluate transMel on the CPU,
#               then score it on the real recordings in ../shared/data
#   make test   install what is missing, check style (ruff) and run the test suite
PYTHON ?= python3
# Sound sources of the rendered corpus (timbre_lobes/render/catalog.py): SoundFonts, Gravis patches with
# TiMidity++, STK, DX7 voice banks (hexter); chromium tests the interactive map page.
APT_PACKAGES = libfluidsynth3 libsndfile1 fluid-soundfont-gm timgm6mb-soundfont opl3-soundfont musescore-general-soundfont \
	minuet-data denemo-data freepats timidity stk faketime hexter chromium
DEMO_OUT ?= results/demo
# The CPU-sized transMel of the demo: every size is a YAML key, so this is only overrides, read from
# the CPU budget (DEMO_BUDGET's common, systems.transMel and demo lists; see benchmarks/budget.py) when
# the demo runs. Plain softmax heads, a 20 ms hop and no waveform augmentation but a training noise
# floor, with a 60 dB level-relative floor on the features: on this budget the heads learn far
# faster than the paper's angular margins (docs/experiments/README.md).
DEMO_BUDGET ?= benchmarks/cpu_budget.yaml
DEMO_OVERRIDES ?= $$($(PYTHON) benchmarks/budget.py $(DEMO_BUDGET) transMel --demo)

.PHONY: setup apt pip test lint demo clean-demo

setup: apt pip

apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

pip:
	$(PYTHON) -m pip install -q -r requirements.txt
	$(PYTHON) -m pip install -q --no-deps --no-build-isolation -e .

test: setup lint
	$(PYTHON) -m pytest -q

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

demo:
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory setup && \
	overrides="$(DEMO_OVERRIDES)" && \
	$(PYTHON) recipes/NSynth/train.py hparams/transMel.yaml $$overrides --output_folder=$(DEMO_OUT) && \
	echo "Demo wall time, set-up and rendering included: $$(( $$(date +%s) - start )) s. Model: $(DEMO_OUT)/model" && \
	echo "The same model on the real recordings in ../shared/data (when present):" && \
	$(PYTHON) benchmarks/real_samples.py --model $(DEMO_OUT)/model
