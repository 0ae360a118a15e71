# The two commands of the README:
#   make run    set up, then serve the control plane on its embedded default store
#   make test   set up, then run the whole test suite
.PHONY: setup run test lint protos check-protos bench

VENV := .venv/bin
LISTEN ?= 127.0.0.1:50051
STORE ?=

setup:
	@bash scripts/bootstrap.sh

run: setup
	$(VENV)/fusebox serve --listen $(LISTEN) $(if $(STORE),--store $(STORE))

test: setup
	$(VENV)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/ruff check agent controlplane tests bench scripts examples
	$(VENV)/mypy
	$(VENV)/python scripts/gen_protos.py --check

protos: setup
	$(VENV)/python scripts/gen_protos.py

check-protos: setup
	$(VENV)/python scripts/gen_protos.py --check

bench: setup
	$(VENV)/python -m bench.agent_overhead
