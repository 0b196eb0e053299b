# Two commands set everything up on a machine with only Python 3.11+ and make:
#   make demo   creates .venv and builds demo stores from real sample images
#   make test   creates .venv and runs the tests
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The CPU build of PyTorch this machine keeps on disk; a bare `torch` would download a
# CUDA build of several GB. The tests run the DataLoader adapter and the MONAI baseline
# of `make bench` needs it.
TORCH  ?= torch==2.13.0
# nnU-Net v2, for its dataset-integrity check of `medimg-build export --to nnunet` in the
# tests; without its dependencies (its network code pulls timm/torchvision and a CUDA torch);
# what the check imports is in the test extra.
NNUNET ?= nnunetv2==2.8.1 dynamic_network_architectures==0.4.4

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test,torch,bench]"
	$(BIN)/python -m pip install --quiet --no-deps $(NNUNET)
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/medimg-build demo --out demo-output

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) demo-output .pytest_cache
