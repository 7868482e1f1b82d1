"""The README's relative-attention example runs as written (its asserts check the numbers it shows)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_relative_attention_example_runs():
    text = README.read_text()
    section = text[text.index("### Relative attention: T5 and Transformer-XL") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(code, "README.md (relative attention)", "exec"), {})
