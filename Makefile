# lwd: `make demo` sets up and runs the simulated fleet learning loop; `make test` sets up and runs the tests.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
WHEELHOUSE ?= $(or $(LWD_WHEELHOUSE),../shared/wheels)
DEMO_ARGS ?=
PYTEST_ARGS ?=
# Off-robot the venv is the ament prefix: launch_ros finds lib/lwd/<exe> and the package index there.
RUN_ENV = PATH="$(abspath $(VENV))/bin:$$PATH" AMENT_PREFIX_PATH="$(abspath $(VENV))$${AMENT_PREFIX_PATH:+:$$AMENT_PREFIX_PATH}" \
          MUJOCO_GL=$${MUJOCO_GL:-egl} PYTHONUNBUFFERED=1

.PHONY: setup demo test lint clean deps package
setup: deps package

deps: $(VENV)/.deps-stamp

$(VENV)/.deps-stamp: Makefile scripts/setup_venv.sh
	WHEELHOUSE="$(WHEELHOUSE)" VENV="$(VENV)" bash scripts/setup_venv.sh
	touch $@

# Regular (non-editable) install: an editable install skips data_files, so launch_ros would find no nodes.
package: deps
	$(PY) -m pip install -q --no-deps --no-build-isolation --force-reinstall . >/dev/null
	@rm -rf build src/*.egg-info

demo: setup
	$(RUN_ENV) $(VENV)/bin/lwd demo --out runs/demo --overwrite $(DEMO_ARGS)

lint: deps
	$(VENV)/bin/ruff check src test launch

test: setup lint
	$(RUN_ENV) $(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build install log src/*.egg-info
