# timbre-lobes: set-up, tests and the CPU demo.
#   make demo   install what is missing, render the SoundFont corpus, train and evaluate transMel on the CPU
#   make test   install what is missing, check style (ruff) and run the test suite
PYTHON ?= python3
APT_PACKAGES = libfluidsynth3 libsndfile1 fluid-soundfont-gm timgm6mb-soundfont opl3-soundfont musescore-general-soundfont
DEMO_OUT ?= results/demo
# The CPU-sized transMel of the demo: every size is a YAML key, so this is only overrides.
# Plain softmax heads, a 20 ms hop and no augmentation: on this budget they learn far faster than
# the paper's angular margins (docs/experiments/README.md).
DEMO_OVERRIDES ?= --batch_size=32 --eval_batch_size=32 --num_workers=2 --crop_seconds=1.5 \
	--crop_max_start=1.0 --n_filters=80 --hop_samples=320 --resnet_channels=[16,32,64,128] \
	--resnet_blocks=[1,1,1,1] --resnet_strides=[2,2,2,2] --freq_collapse=mean --emb_dim=256 \
	--head_type=linear --augment_prob=0.0 --lr=0.002 --lr_final=0.0002 --number_of_epochs=12

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
	$(PYTHON) recipes/NSynth/train.py hparams/transMel.yaml $(DEMO_OVERRIDES) --output_folder=$(DEMO_OUT) && \
	echo "Demo wall time, set-up and rendering included: $$(( $$(date +%s) - start )) s. Model: $(DEMO_OUT)/model"
