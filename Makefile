.PHONY: run test lint bench setup

UV := $(shell command -v uv 2>/dev/null)

# uv itself, when missing (PyPI), then the project from the lock file.
setup:
ifndef UV
	python3 -m pip install --quiet uv
endif
	uv sync --frozen

# The whole stack with the demo feed (starts a local Redis if none answers).
run: setup
	uv run dvcpulse up

# Lint, then every test but the long soak.
test: setup
	uv run ruff check .
	uv run pytest -q

lint:
	uv run ruff check . && uv run ruff format --check .
