# Two commands matter: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test venv model results benchmark clean

venv: $(STAMP)

$(STAMP): requirements/runtime.txt requirements/dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements/dev.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py --out demo-output

test: $(STAMP)
	$(BIN)/python -m pytest -q

# Train the shipped default model on MedFAD-mini (builds the benchmark first if absent; resumable).
model: $(STAMP)
	$(BIN)/python scripts/train_default_model.py --epochs 30 --threads 1 --progress none

# Leave-one-task-out training + evaluation of every method; writes docs/RESULTS.md.
results: $(STAMP)
	test -f data/medfad-mini/medfad_mini.json || $(BIN)/d24fad build-benchmark --out data/medfad-mini --seed 0 --progress none
	$(BIN)/python -m d24fad.evaluation.leave_one_out --data data/medfad-mini --out runs/loto --epochs 20 --threads 1 --with-ssd-only --markdown docs/RESULTS.md

benchmark: $(STAMP)
	$(BIN)/d24fad benchmark-speed --backbone wide_resnet50_2 --weights random --shots 8 --batch 16 --image-size 128 --dtype bf16 --json

clean:
	rm -rf $(VENV) demo-output .pytest_cache
