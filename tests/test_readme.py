"""The README's quick start runs as written (documentation that cannot drift)."""

import re
from pathlib import Path


def test_readme_quick_start_runs():
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.findall(r"```python\n(.*?)```", text, re.S)[0]
    ns: dict = {}
    exec(
        compile(
            code.replace("ph.run_quick_test()", "ph.run_quick_test(verbose=False)"),
            "README.md",
            "exec",
        ),
        ns,
    )
    assert ns["ll"].shape == (8,) and ns["path"].shape == (8, 200)
    assert (ns["path"][7, 30:] == -1).all()
    assert ns["res"].path.shape == (8, 200)
