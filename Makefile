# The two commands a newcomer needs (see README.md):
#   make demo   set up .venv, fetch the model files, classify the bundled example
#   make test   set up .venv (with the test tools), run the test suite
PY := .venv/bin/python

.PHONY: setup setup-test demo test test-latest lock lint bench results student
setup:
	scripts/setup.sh

setup-test:
	scripts/setup.sh --with-test-tools

demo: setup
	$(PY) -m audio.models download
	$(PY) -m audio.export
	$(PY) parse_file.py examples/speech.wav

test: setup-test
	$(PY) -m pytest

# make lock: resolve requirements*.txt again (the newest releases within their ranges) into
# the two locks the setup installs, with hashes, for every platform and Python >= 3.11
# (uv's universal resolution: one lock serves x86_64 and aarch64). The runtime lock is
# constrained by the dev lock, so both pin the same versions. Review the diff, run
# `make test`, commit both. requirements-lock.in adds pip (the setup upgrades it from the
# lock) and the corrections uv needs; the setup then installs the new dev lock with pip
# and checks the venv against it, so a lock pip cannot install is seen here.
UV_COMPILE = .venv/bin/uv pip compile --quiet --universal --python-version 3.11 \
	--generate-hashes --custom-compile-command 'make lock'
lock: setup-test
	$(UV_COMPILE) requirements.txt requirements-test.txt requirements-batch.txt \
		requirements-lock.in --upgrade -o requirements-dev.lock
	$(UV_COMPILE) requirements.txt requirements-lock.in -c requirements-dev.lock \
		--upgrade -o requirements.lock
	scripts/setup.sh --with-test-tools

# make test-latest (not in CI): the suite in .venv-latest, a venv of the newest releases
# that requirements*.txt allow, so that a release that breaks us (apache-beam 2.78 did)
# is seen here before a user's `pip install .` meets it. The lock test is skipped there.
LATEST := .venv-latest/bin/python
LATEST_LOG := .venv-latest/install.log
LATEST_PIP = $(LATEST) -m pip install -q --upgrade
test-latest: setup-test
	rm -rf .venv-latest
	python3 -m venv .venv-latest
	@echo "test-latest: installing the newest releases into .venv-latest (pip's output: $(LATEST_LOG))"
	@($(LATEST_PIP) pip && $(LATEST_PIP) -r requirements.txt -r requirements-test.txt \
		-r requirements-batch.txt && $(LATEST) -m pip install -q --no-deps -e . \
		&& $(LATEST) -m pip check) > $(LATEST_LOG) 2>&1 || (tail -n 30 $(LATEST_LOG); exit 1)
	@echo "test-latest: what is newer than requirements-dev.lock:"
	-@$(LATEST) scripts/check_lock.py requirements-dev.lock
	AUDIO_ANALYSIS_TEST_LATEST=1 $(LATEST) -m pytest

lint: setup-test
	$(PY) -m ruff check .
	.venv/bin/lint-imports --no-cache

bench: setup
	$(PY) bench/frontend.py
	$(PY) bench/embed.py

# make results: train every model of docs/results.md on bal_train (validation carved from
# it), export and evaluate each as a bundle on eval, regenerate the table in
# docs/results.md from the bundles' metrics.json/provenance.json, and write the shipped
# ensemble (four attention seeds with weight averaging and two DBoF seeds, each refit on
# all of bal_train for the epoch count its validation run chose, int8 weights) to
# models/<DEFAULT_BUNDLE>/.
# It then calibrates the shipped bundles (python -m yt8m.calibrate: per-class thresholds
# chosen on the validation split carved from bal_train, class_metrics.csv on eval) and
# regenerates the calibration section of docs/results.md. The ensemble's members trained
# on every bal_train clip, so its thresholds are chosen on the validation split of its
# validation twin: attention seed 1 twice and DBoF seed 1 (the shipped 4:2 mix), the
# validation runs that held out seed 1's split.
# Then (make student, a second phase: the teacher is the ensemble just written) it
# distils the ensemble into one attention model: trained on the ensemble's scores on
# bal_train (python -m yt8m.distill; λ = STUDENT_LAMBDA = 1, chosen on the validation split
# of seed 1 among 0.5, 0.8 and 1), 60 epochs at most, seed 1's split held out (no refit:
# the student is calibrated on its own held-out split), exported with int8 weights to
# models/$(STUDENT_BUNDLE)/. Seed 2 holds out the same split (--validation_seed=1).
# `make -j2 results` runs two trainings at once, each on one thread (about 2 h of
# training on 2 idle cores from scratch; -j1 takes longer).
# As root on a shared machine: make -j2 results NICE="nice -n -5".
AUDIOSET ?= $(or $(AUDIO_ANALYSIS_SHARED),$(CURDIR)/../shared)/data/audioset_v1_embeddings
RESULTS ?= runs/results
NICE ?=
THREADS ?= $(if $(filter -j%,$(MAKEFLAGS)),1,2)
TRAIN = $(NICE) $(PY) -m yt8m.train --num_threads=$(THREADS) --start_new_model \
	--train_data_pattern='$(AUDIOSET)/bal_train/*.tfrecord' --learning_rate_decay_examples=400000
YT8M_SEED_FLAGS = --num_epochs=100 --feature_names=audio_embedding --feature_sizes=128 \
	--frame_features --batch_size=512 --num_classes=527
LOGISTIC_FLAGS = $(YT8M_SEED_FLAGS) --model=FrameLevelLogisticModel --base_learning_rate=0.05
DBOF_FLAGS = $(YT8M_SEED_FLAGS) --model=DbofModel --dbof_cluster_size=2048 --iterations=10
ATTENTION_FLAGS = --num_epochs=100 --batch_size=256 --model=AttentionModel \
	--base_learning_rate=0.001 --early_stopping_patience=6 --swa_start_epoch=10
YT8M_EXPORT = $(PY) -m yt8m.export --force --eval_data_pattern='$(AUDIOSET)/eval/*.tfrecord'
CALIBRATE = $(PY) -m yt8m.calibrate --train_data_pattern='$(AUDIOSET)/bal_train/*.tfrecord' \
	--eval_data_pattern='$(AUDIOSET)/eval/*.tfrecord'
VALIDATION_TWIN = $(RESULTS)/bundles/validation_twin
CALIBRATED_BUNDLES = models/$(SHIPPED_BUNDLE) models/audioset-logistic-v1
# The bundle names are read from their one definition in the source, not by running the
# venv's Python: make expands these while parsing, before `setup` has made .venv.
STUDENT_BUNDLE = $(shell sed -n 's/^STUDENT_BUNDLE = "\(.*\)"$$/\1/p' yt8m/bundle/edge.py)
STUDENT_LAMBDA = 1.0
TEACHER_SCORES = $(RESULTS)/teacher/$(SHIPPED_BUNDLE).npz
STUDENT_RUNS = $(RESULTS)/student_l$(STUDENT_LAMBDA)_s1 $(RESULTS)/student_l$(STUDENT_LAMBDA)_s2
SHIPPED_BUNDLE = $(shell sed -n 's/^DEFAULT_BUNDLE = "\(.*\)"$$/\1/p' yt8m/bundle/format.py)
# The shipped ensemble: attention seeds 1-4 and DBoF seeds 1-2, each refit for the epoch
# count its own validation run chose (DBoF seed 1's runs are `dbof` and `dbof_refit`).
ATTENTION_SEEDS = 1 2 3 4
SHIPPED_RUNS = $(ATTENTION_SEEDS:%=refit_attention_s%) dbof_refit refit_dbof_s2
RESULT_RUNS = $(ATTENTION_SEEDS:%=attention_s%) $(SHIPPED_RUNS) logistic logistic_refit dbof \
	dbof_s2 lstm

results: setup $(RESULT_RUNS:%=$(RESULTS)/%/provenance.json)
	$(YT8M_EXPORT) --train_dir=$(RESULTS)/logistic --name=logistic --output_dir=$(RESULTS)/bundles/logistic
	$(YT8M_EXPORT) --train_dir=$(RESULTS)/logistic_refit --name=logistic_refit \
		--output_dir=$(RESULTS)/bundles/logistic_refit
	$(YT8M_EXPORT) --train_dir=$(RESULTS)/dbof --name=dbof --output_dir=$(RESULTS)/bundles/dbof \
		--max_size_mb=100
	$(YT8M_EXPORT) --train_dir=$(RESULTS)/lstm --name=lstm --output_dir=$(RESULTS)/bundles/lstm
	$(YT8M_EXPORT) --train_dir=$(RESULTS)/attention_s1 --name=attention \
		--output_dir=$(RESULTS)/bundles/attention
	$(YT8M_EXPORT) $(SHIPPED_RUNS:%=--train_dir=$(RESULTS)/%) --weights_dtype=int8 \
		--name=$(SHIPPED_BUNDLE)
	$(YT8M_EXPORT) --train_dir=$(RESULTS)/attention_s1 --train_dir=$(RESULTS)/attention_s1 \
		--train_dir=$(RESULTS)/dbof --weights_dtype=int8 --name=validation_twin \
		--output_dir=$(VALIDATION_TWIN)
	$(CALIBRATE) models/$(SHIPPED_BUNDLE) --validation_bundle=$(VALIDATION_TWIN)
	$(CALIBRATE) models/audioset-logistic-v1
	$(MAKE) student
	$(PY) -m yt8m.results $(RESULTS)/bundles/logistic $(RESULTS)/bundles/logistic_refit \
		$(RESULTS)/bundles/dbof $(RESULTS)/bundles/lstm $(RESULTS)/bundles/attention \
		models/$(SHIPPED_BUNDLE) models/$(STUDENT_BUNDLE) \
		--calibration $(CALIBRATED_BUNDLES) models/$(STUDENT_BUNDLE)

# The distilled student (see above); its teacher is the shipped ensemble as it is now.
student: $(STUDENT_RUNS:%=%/provenance.json)
	$(YT8M_EXPORT) --train_dir=$(word 1,$(STUDENT_RUNS)) --weights_dtype=int8 --name=$(STUDENT_BUNDLE)
	$(CALIBRATE) models/$(STUDENT_BUNDLE)

$(TEACHER_SCORES): | setup
	$(PY) -m yt8m.distill models/$(SHIPPED_BUNDLE) --output=$@ \
		--train_data_pattern='$(AUDIOSET)/bal_train/*.tfrecord'

# One rule per training run; a run is redone only when its provenance.json is missing.
# .SECONDARY: make must never delete a validation run's provenance.json as an
# "intermediate" file when only a refit target is asked for (that would retrain it).
.SECONDARY:
$(RESULTS)/logistic/provenance.json: | setup
	$(TRAIN) $(LOGISTIC_FLAGS) --train_dir=$(@D) --early_stopping_patience=8 \
		--early_stopping_metric=hit_at_one --validation_fraction=0.05
$(RESULTS)/logistic_refit/provenance.json: $(RESULTS)/logistic/provenance.json
	$(TRAIN) $(LOGISTIC_FLAGS) --train_dir=$(@D) --refit_epochs_from=$(RESULTS)/logistic
$(RESULTS)/dbof/provenance.json: | setup
	$(TRAIN) $(DBOF_FLAGS) --train_dir=$(@D) --early_stopping_patience=3
$(RESULTS)/dbof_refit/provenance.json: $(RESULTS)/dbof/provenance.json
	$(TRAIN) $(DBOF_FLAGS) --train_dir=$(@D) --refit_epochs_from=$(RESULTS)/dbof
$(RESULTS)/dbof_s%/provenance.json: | setup
	$(TRAIN) $(DBOF_FLAGS) --train_dir=$(@D) --early_stopping_patience=3 --seed=$*
$(RESULTS)/refit_dbof_s%/provenance.json: $(RESULTS)/dbof_s%/provenance.json
	$(TRAIN) $(DBOF_FLAGS) --train_dir=$(@D) --refit_epochs_from=$(RESULTS)/dbof_s$* --seed=$*
$(RESULTS)/lstm/provenance.json: | setup
	$(TRAIN) $(YT8M_SEED_FLAGS) --model=LstmModel --lstm_cells=256 --base_learning_rate=0.01 \
		--early_stopping_patience=5 --train_dir=$(@D)
$(RESULTS)/attention_s%/provenance.json: | setup
	$(TRAIN) $(ATTENTION_FLAGS) --seed=$* --train_dir=$(@D)
$(RESULTS)/student_l$(STUDENT_LAMBDA)_s%/provenance.json: $(TEACHER_SCORES)
	$(TRAIN) $(ATTENTION_FLAGS) --num_epochs=60 --seed=$* --validation_seed=1 \
		--teacher_scores=$(TEACHER_SCORES) --distill_weight=$(STUDENT_LAMBDA) --train_dir=$(@D)
$(RESULTS)/refit_attention_s%/provenance.json: $(RESULTS)/attention_s%/provenance.json
	$(TRAIN) $(ATTENTION_FLAGS) --seed=$* --train_dir=$(@D) \
		--refit_epochs_from=$(RESULTS)/attention_s$*
