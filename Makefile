# timbre-lobes: set-up, tests and the CPU demo.
#   make demo   install what is missing, render the SoundFont corpus, train and evaluate transMel on the CPU
#   make test   install what is missing and run the test suite
PYTHON ?= python3
APT_PACKAGES = libfluidsynth3 libsndfile1 fluid-soundfont-gm timgm6mb-soundfont opl3-soundfont musescore-general-soundfont
DEMO_OUT ?= results/demo

.PHONY: setup apt pip test demo clean-demo

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

test: setup
	$(PYTHON) -m pytest -q

demo: setup
	$(PYTHON) recipes/NSynth/demo.py --output_folder=$(DEMO_OUT)
