# The two set-up commands of README.md. Each installs what it needs.
.PHONY: env test demo

PYTHON_ENV := tools/venv/bin/python

env:
	tools/setup_env.sh

# The whole test suite (GPU tests skip on a machine without CUDA; the mini-corpus tests
# skip, saying why, where espeak-ng cannot be installed), then the Transformers tests on
# the newest supported Transformers release too (a side folder, built once). Transformers'
# own common model tests come from its source distribution (a side folder, built once).
test: env
	tools/install_mini_sources.sh --optional
	tools/fetch_transformers_tests.sh
	$(PYTHON_ENV) -m pytest test
	tools/test_transformers_releases.sh -q

# The offline demo: egs2/mini_en/asr1 (synthetic English speech, mha / mtla_s2 with the
# speech prefix unmerged) on CPU, ending with its results table and plot.
demo: env
	tools/install_mini_sources.sh
	cd egs2/mini_en/asr1 && ./run.sh
	@cat egs2/mini_en/asr1/RESULTS.md
	@echo "plot: egs2/mini_en/asr1/RESULTS.png"
