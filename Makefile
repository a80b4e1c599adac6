# The two commands of the README, and a few helpers. Each sets itself up: the
# first run creates a local virtual environment in .venv from requirements.txt.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Trained models are cached inside the checkout, so a fresh clone trains its own.
export ADVCOURSE_CACHE ?= $(CURDIR)/.cache/models
PROFILE ?= fast
SEED ?= 0
# FORCE=1 re-executes every chapter; otherwise a chapter whose code, package, data and settings are
# unchanged since the last build is reused from _build/exec-cache (a prose edit rebuilds in seconds).
BUILD_FLAGS = --out _build --profile $(PROFILE) --seed $(SEED) $(if $(FORCE),--force) $(if $(JOBS),--jobs $(JOBS))

.PHONY: book book-student test chapter sync benchmark clean test-deep

$(VENV)/.installed: requirements.txt requirements-nodeps.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (advcourse)" >/dev/null
	touch $@

## make book: execute every chapter (fast profile on the embedded data) and build the HTML book in _build/html
book: $(VENV)/.installed
	$(PY) scripts/build_book.py $(BUILD_FLAGS)

## make book-student: the full book and the student edition without solutions (_build/student/html)
book-student: $(VENV)/.installed
	$(PY) scripts/build_book.py $(BUILD_FLAGS) --editions full student

## make test: the unit, property and claim tests, every chapter executed, the HTML build checked
test: $(VENV)/.installed
	$(PY) -m pytest

## make chapter CH=01_linear_explanation: execute one chapter into _build/stage/chapters
chapter: $(VENV)/.installed
	$(PY) scripts/build_book.py $(BUILD_FLAGS) --chapters $(CH)

## make sync: rewrite the paired .ipynb notebooks from the chapters' .md sources
sync: $(VENV)/.installed
	$(PY) scripts/sync_notebooks.py

## make benchmark: compare advcourse's attacks with torchattacks, foolbox and ART (writes benchmarks/RESULTS.md)
# The peers are installed without their dependency pins (they pin an old requests that
# breaks Sphinx); benchmarks/requirements.txt lists what they need beyond ours.
benchmark: $(VENV)/.installed
	$(PY) -m pip install --quiet --no-deps -r benchmarks/requirements.txt
	$(PY) benchmarks/run.py $(BENCH_ARGS)

## make test-deep: the attack property tests with hundreds of random examples each (DEEP=n sets the count)
test-deep: $(VENV)/.installed
	ADVCOURSE_DEEP=$(or $(DEEP),1) $(PY) -m pytest tests/attacks/test_atk_properties.py -q

clean:
	rm -rf _build .cache .pytest_cache

## make smoke: every chapter's full-profile (GPU) code path run on the CPU with its work capped (CI runs it too)
.PHONY: smoke
smoke: $(VENV)/.installed
	$(PY) -m pytest tests/test_smoke.py tests/test_device_hygiene.py -q

## make student-notebooks: the notebooks to hand out (no solutions, an answer cell per checked exercise) in _build/student-notebooks; grade the returned ones with `advcourse grade`
.PHONY: student-notebooks
student-notebooks: $(VENV)/.installed
	$(PY) scripts/student_notebooks.py --out _build/student-notebooks

## make checkpoints: retrain the shipped checkpoints in data/checkpoints (chapter 4's PGD-trained network) with their recorded recipes
# Prints each new SHA-256: pin it in the chapter's module (CHECKPOINT_SHA256), which refuses other weights.
.PHONY: checkpoints
checkpoints: $(VENV)/.installed
	$(PY) scripts/train_checkpoints.py

## make nbval: every chapter's Colab notebook run twice as in Colab (set-up cell against a local clone), outputs compared by nbval
.PHONY: nbval
nbval: $(VENV)/.installed
	ADVCOURSE_NBVAL=all $(PY) -m pytest tests/test_notebooks.py -k nbval -q
