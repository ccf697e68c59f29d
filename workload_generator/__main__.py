"""`python -m workload_generator`: see workload_generator.cli."""
from workload_generator.cli import run

if __name__ == "__main__":
    run()
