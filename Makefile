# The two commands of the README:
#   make run    set up, then serve the control plane on its embedded default store
#   make test   set up, then run the whole test suite
.PHONY: setup setup-tests run test lint protos check-protos check-wheel bench bench-cluster bench-trip bench-shared screenshots

VENV := .venv/bin
LISTEN ?= 127.0.0.1:50051
STORE ?=

setup:
	@bash scripts/bootstrap.sh

# The same, plus chromium and chromium-driver for tests/browser (the console's page).
setup-tests:
	@bash scripts/bootstrap.sh --tests

run: setup
	$(VENV)/fusebox serve --listen $(LISTEN) $(if $(STORE),--store $(STORE))

test: setup-tests
	$(VENV)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/ruff check agent controlplane tests bench scripts examples
	$(VENV)/mypy
	$(VENV)/python scripts/gen_protos.py --check

# The console's screenshots in docs/console.md come from its browser tests.
screenshots: setup-tests
	FUSEBOX_SCREENSHOTS=docs/img/console $(VENV)/python -m pytest tests/browser -p no:cacheprovider

protos: setup
	$(VENV)/python scripts/gen_protos.py

check-protos: setup
	$(VENV)/python scripts/gen_protos.py --check

# The wheel as users get it: installed in new virtualenvs outside the tree (scripts/check_wheel.sh).
check-wheel: setup
	bash scripts/check_wheel.sh

bench: setup
	$(VENV)/python -m bench.agent_overhead

# Shared state: per-call cost of the cluster agent vs pybreaker's Redis storage (~15 s).
bench-shared: setup
	$(VENV)/python -m bench.shared_state

# The seed scenarios (docs/examples.md). Durations are Go durations; empty = the default.
#   make demo                          the Dapr resiliency quickstart, seed spec, embedded store
#   make demo STORE=redis://127.0.0.1:6379/0 PER_INSTANCE=1 RETRY=200ms BREAKER_TIMEOUT=1s
#   make failsafe STEP=timeout|retry|breaker|fallback|composition|all SEED=7
.PHONY: demo failsafe
REPLICAS ?= 3
HEALTHY ?=
OUTAGE ?=
RECOVERY ?=
ORDER_INTERVAL ?=
RETRY ?=
BREAKER_TIMEOUT ?=
PER_INSTANCE ?=
SUMMARY_JSON ?=
STEP ?= all
SEED ?= 7

DEMO_FLAGS = --replicas $(REPLICAS) $(if $(STORE),--store $(STORE)) \
	$(if $(HEALTHY),--healthy $(HEALTHY)) $(if $(OUTAGE),--outage $(OUTAGE)) \
	$(if $(RECOVERY),--recovery $(RECOVERY)) $(if $(ORDER_INTERVAL),--order-interval $(ORDER_INTERVAL)) \
	$(if $(RETRY),--retry-interval $(RETRY)) $(if $(BREAKER_TIMEOUT),--breaker-timeout $(BREAKER_TIMEOUT)) \
	$(if $(PER_INSTANCE),--per-instance) $(if $(SUMMARY_JSON),--summary-json $(SUMMARY_JSON))

demo: setup
	$(VENV)/python examples/quickstart/demo.py $(strip $(DEMO_FLAGS))

failsafe: setup
	$(VENV)/python examples/failsafe/run.py --step $(STEP) --seed $(SEED) $(if $(STORE),--store $(STORE))

# Cluster-wide breakers (issues 4 and 12): the fleet trip's speed (bench-trip), then ingest
# (~2-3 minutes).
bench-cluster: bench-trip
	$(VENV)/python -m bench.ingest

# A faster fleet trip (issue 12), every scenario side by side (~1 minute): trip propagation,
# a dead upstream behind 50 callers, the back-to-back loop and the paced sync fleet.
bench-trip: setup
	$(VENV)/python -m bench.cluster_trip
	$(VENV)/python -m bench.wasted_calls
	$(VENV)/python -m bench.fleet_trip

# Scale (issue 7): 1,000 agents over 3 replicas (~3-5 minutes), and the soak.
#   make soak SOAK_MINUTES=1    a smoke run; the default is 10 minutes
.PHONY: bench-scale soak
SOAK_MINUTES ?= 10

bench-scale: setup
	$(VENV)/python -m bench.many_agents

soak: setup
	$(VENV)/python -m bench.soak --minutes $(SOAK_MINUTES)

# The console's live feed (issue 16): 1,000 breakers, a transition every 10 ms, and the
# server's CPU with 0, 1, 10 and 50 connected pages side by side (~1-2 minutes).
.PHONY: bench-console
bench-console: setup
	$(VENV)/python -m bench.console_feed

# Fleet budgets (issue 17): retry amplification in a brownout (no budget, per-instance budget,
# fleet budget) and rate limit accuracy, 50 callers on 2 replicas + redis (~2-3 minutes).
.PHONY: bench-budgets
bench-budgets: setup
	$(VENV)/python -m bench.budgets
