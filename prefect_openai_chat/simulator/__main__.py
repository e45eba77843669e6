"""`python -m prefect_openai_chat.simulator --profile flaky --port 18787 --seed 7`."""

import sys

from prefect_openai_chat.simulator.cli import main

if __name__ == "__main__":
    sys.exit(main())
