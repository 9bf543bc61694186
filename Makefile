.PHONY: run test lint bench

# The whole stack with the demo feed (starts a local Redis if none answers).
run:
	uv sync --frozen
	uv run dvcpulse up

# Lint, then every test but the long soak.
test:
	uv sync --frozen
	uv run ruff check .
	uv run pytest -q

lint:
	uv run ruff check . && uv run ruff format --check .
