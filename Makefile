# The two commands of the README: `make run` and `make test`. Both install what they need.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
# The laptop commands run in development unless told otherwise: an unset ENVIRONMENT is
# production, where the placeholder SECRET_KEY and API_WRITE_KEY are refused.
DEV := ENVIRONMENT=$${ENVIRONMENT:-development}

.PHONY: setup run test lint demo demo-report mail sms migrate worker bench faults

setup:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 \
		|| python3 -m pip install --quiet --disable-pip-version-check uv
	@$(UV) sync --frozen --quiet
	@sh scripts/dev_env.sh

run: setup  ## Temporal dev server + SMTP catcher + worker on embedded defaults (or your settings)
	@$(DEV) $(UV) run --frozen python -m devstack

test: setup  ## lint, type-check, the whole test suite against real parts, compose validation
	@scripts/ensure_postgres.sh
	@command -v chromium >/dev/null || apt-get install -y -q chromium chromium-driver || sudo apt-get install -y -q chromium chromium-driver  # the report page is checked in it
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy .
	$(UV) run --frozen lint-imports
	$(UV) run --frozen pytest
	STRICT=1 bash scripts/validate_compose.sh

demo: setup  ## with `make run` up: a customer abandons a cart; the email shows up in ~2 s
	@$(DEV) JOURNEY_SPEEDUP=$${JOURNEY_SPEEDUP:-3600} $(UV) run --frozen python -m starter demo

demo-report: setup  ## with `make run` up: a few hundred customers through cart recovery with a 50 % holdout, reading and buying; prints the report's address
	@$(DEV) JOURNEY_SPEEDUP=$${JOURNEY_SPEEDUP:-3600} $(UV) run --frozen python -m devstack.demo_report $(if $(CUSTOMERS),--customers $(CUSTOMERS))

mail: setup  ## list the mail the local catcher kept (SHOW=N prints message N)
	@$(DEV) $(UV) run --frozen python -m starter mail $(if $(SHOW),--show $(SHOW))

sms: setup  ## list the texts the local SMS catcher kept (SHOW=N prints text N)
	@$(DEV) $(UV) run --frozen python -m starter sms $(if $(SHOW),--show $(SHOW))

migrate: setup
	@$(DEV) $(UV) run --frozen python -m store.migrate

bench: setup  ## benchmarks (BENCHMARKS.md): own dev server, catcher, DB, worker, API; SIZE=smoke for a quick run; DB=postgres; ONLY=sends|report|burst|exit; PROFILE=dir (py-spy)
	@$(UV) run --frozen python -m bench --size $(or $(SIZE),full) $(if $(DB),--db $(DB)) $(if $(ONLY),--only $(ONLY)) $(if $(PROFILE),--profile $(PROFILE))

faults: setup  ## the fault suite (BENCHMARKS.md "Faults"): live journeys under crashes, outages, bad relays; N=journeys per fault
	@scripts/ensure_postgres.sh
	$(UV) run --frozen python -m faults $(if $(N),--journeys $(N))
