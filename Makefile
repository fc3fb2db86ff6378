# The two commands a newcomer needs (see README.md):
#   make demo   set up .venv, fetch the model files, classify the bundled example
#   make test   set up .venv (with the test tools), run the test suite
PY := .venv/bin/python

.PHONY: setup setup-test demo test lint bench results
setup:
	scripts/setup.sh

setup-test:
	scripts/setup.sh --with-test-tools

demo: setup
	$(PY) -m audio.models download
	$(PY) -m vggish.export
	$(PY) parse_file.py examples/speech.wav

test: setup-test
	$(PY) -m pytest

lint: setup-test
	$(PY) -m ruff check .

bench: setup
	$(PY) bench/frontend.py
	$(PY) bench/embed.py

# make results: train every model of docs/results.md on bal_train (validation carved from
# it), export and evaluate each as a bundle on eval, regenerate the table in
# docs/results.md from the bundles' metrics.json/provenance.json; the two-member attention
# ensemble is written to models/<DEFAULT_BUNDLE>/, the shipped classifier. Runs
# sequentially; about an hour on 2 idle cores. As root on a shared machine: make results NICE="nice -n -5".
AUDIOSET ?= $(or $(AUDIO_ANALYSIS_SHARED),$(CURDIR)/../shared)/data/audioset_v1_embeddings
RESULTS ?= runs/results
NICE ?=
YT8M_SEED_FLAGS = --train_data_pattern='$(AUDIOSET)/bal_train/*.tfrecord' --num_epochs=100 \
	--learning_rate_decay_examples=400000 --feature_names=audio_embedding --feature_sizes=128 \
	--frame_features --batch_size=512 --num_classes=527 --start_new_model
YT8M_ATTENTION_FLAGS = --train_data_pattern='$(AUDIOSET)/bal_train/*.tfrecord' --num_epochs=100 \
	--learning_rate_decay_examples=400000 --batch_size=256 --model=AttentionModel \
	--base_learning_rate=0.001 --early_stopping_patience=6 --start_new_model
YT8M_EXPORT = $(PY) -m yt8m.export --force --eval_data_pattern='$(AUDIOSET)/eval/*.tfrecord'
SHIPPED_BUNDLE = $(shell $(PY) -c 'from yt8m.inference import DEFAULT_BUNDLE; print(DEFAULT_BUNDLE)')

results: setup
	$(NICE) $(PY) -m yt8m.train $(YT8M_SEED_FLAGS) --train_dir=$(RESULTS)/logistic \
		--model=FrameLevelLogisticModel --base_learning_rate=0.05 --early_stopping_patience=8 \
		--early_stopping_metric=hit_at_one --validation_fraction=0.05
	$(YT8M_EXPORT) --train_dir=$(RESULTS)/logistic --name=logistic --output_dir=$(RESULTS)/bundles/logistic
	$(NICE) $(PY) -m yt8m.train $(YT8M_SEED_FLAGS) --train_dir=$(RESULTS)/dbof --model=DbofModel \
		--dbof_cluster_size=2048 --iterations=10 --early_stopping_patience=3
	$(YT8M_EXPORT) --train_dir=$(RESULTS)/dbof --name=dbof --output_dir=$(RESULTS)/bundles/dbof \
		--max_size_mb=100
	$(NICE) $(PY) -m yt8m.train $(YT8M_SEED_FLAGS) --train_dir=$(RESULTS)/lstm --model=LstmModel \
		--lstm_cells=256 --base_learning_rate=0.01 --early_stopping_patience=5
	$(YT8M_EXPORT) --train_dir=$(RESULTS)/lstm --name=lstm --output_dir=$(RESULTS)/bundles/lstm
	for s in 1 2; do $(NICE) $(PY) -m yt8m.train $(YT8M_ATTENTION_FLAGS) --seed=$$s \
		--train_dir=$(RESULTS)/attention_s$$s || exit 1; done
	$(YT8M_EXPORT) --train_dir=$(RESULTS)/attention_s1 --name=attention \
		--output_dir=$(RESULTS)/bundles/attention
	$(YT8M_EXPORT) --train_dir=$(RESULTS)/attention_s1 --train_dir=$(RESULTS)/attention_s2 \
		--name=$(SHIPPED_BUNDLE)
	$(PY) -m yt8m.results $(RESULTS)/bundles/logistic $(RESULTS)/bundles/dbof \
		$(RESULTS)/bundles/lstm $(RESULTS)/bundles/attention models/$(SHIPPED_BUNDLE)
