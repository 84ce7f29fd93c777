# The two set-up commands of README.md. Each installs what it needs.
.PHONY: env test demo

PYTHON_ENV := tools/venv/bin/python

env:
	tools/setup_env.sh

# The whole test suite (GPU tests skip on a machine without CUDA).
test: env
	$(PYTHON_ENV) -m pytest test

demo: env
	@echo "make demo: the offline demo recipe has not landed yet (it arrives with the recipe issues)." >&2
	@exit 2
