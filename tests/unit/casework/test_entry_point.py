"""``python -m casework``'s tools load no web app: only serving imports ``casework.main``."""

import subprocess
import sys

PROBE = """
import sys
import casework.__main__
print("casework.main" in sys.modules, "casework.access_routes" in sys.modules)
"""


def test_the_tools_do_not_import_the_web_app() -> None:
    answer = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    assert answer.stdout.split() == ["False", "False"]
