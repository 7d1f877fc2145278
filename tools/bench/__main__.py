"""`python -m tools.bench` is `cityops bench`."""

from tools.bench.run import app

if __name__ == "__main__":
    app()
