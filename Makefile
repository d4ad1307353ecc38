# Two commands do all the set-up on a fresh machine:
#   make demo   creates .venv, deblurs a clip of real motion blur with the shipped default model
#   make test   creates .venv, runs the test suite (CPU only, no network at run time)
#   make test-fast  the same without the tests marked slow (real clips, Ray clusters): ~2 min
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A CPU build of this version installs from the local wheel cache on our machines;
# on a CUDA machine install your torch into $(VENV) first and it is kept.
TORCH_VERSION ?= 2.13.0

.PHONY: setup test test-fast demo clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

demo: setup
	mkdir -p demo_out
	$(PY) -m pipeline process samples/floor_blurred.mp4 -o demo_out/floor.deblurred.mp4 \
		--compare demo_out/floor.compare.png --reference samples/floor_sharp.mp4 --overwrite
	@echo "demo: demo_out/floor.deblurred.mp4 (deblurred) and demo_out/floor.compare.png" \
		"(blurred | restored | sharp, whole frames and zoomed crops, with PSNRs)"

clean:
	rm -rf $(VENV) demo_out *.egg-info
