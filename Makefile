# vitgpt2: `make demo` runs the offline demo, `make test` the test suite; each sets itself up first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo_run
# Where this machine keeps a CPU build of torch (pip's find-links folder), install it first so that pip
# does not resolve `torch` to a multi-GB CUDA build; elsewhere pip picks the right torch for the machine.
TORCH_WHEEL ?= $(firstword $(wildcard /opt/wheels/torch-2.13.0+cpu-*.whl))

export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test test-fast quality style bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(if $(TORCH_WHEEL),$(BIN)/pip install --quiet "$(TORCH_WHEEL)")
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	rm -rf $(DEMO_DIR)/output $(DEMO_DIR)/scst
	$(BIN)/vitgpt2 make-synthetic --kind scenes --output_dir $(DEMO_DIR)/data
	$(BIN)/vitgpt2 make-tiny-models --coco_dir $(DEMO_DIR)/data --output_dir $(DEMO_DIR)/models
	$(BIN)/accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
		run_captioning.py configs/demo.yaml \
		--bertscore_model "$$($(BIN)/python -m vitgpt2.offline.models minilm)" --bertscore_num_layers 6
	$(BIN)/accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
		run_captioning.py configs/demo_scst.yaml
	$(BIN)/python scripts/demo_stages.py cross-entropy=$(DEMO_DIR)/output scst=$(DEMO_DIR)/scst
	$(BIN)/python scripts/demo_captions.py $(DEMO_DIR)/scst $(DEMO_DIR)/data
	$(BIN)/python scripts/constant_caption_baseline.py $(DEMO_DIR)/data

test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

quality: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

style: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: setup
	$(BIN)/python bench/bench_metrics.py

clean:
	rm -rf $(DEMO_DIR) bench_out .pytest_cache
