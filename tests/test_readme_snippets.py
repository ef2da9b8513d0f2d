"""Every Python snippet of README.md's "Bring your own model" runs as it stands (each in its own
namespace, from an empty folder), against the real libraries."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def snippets() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Bring your own model\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_the_section_has_a_snippet_per_library() -> None:
    found = snippets()
    assert len(found) == 6
    for library in (
        "TorchModel",
        "transformer_lens",
        "GPT2LMHeadModel",
        "HuggingFaceEncoder",
        "nnsight",
        "sae_lens",
    ):
        assert any(library in s for s in found), library


@pytest.mark.parametrize("index", range(6))
def test_snippet_runs(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = snippets()[index]
    for library in re.findall(
        r"^(?:from|import) (transformer_lens|nnsight|sae_lens|transformers)\b", code, re.M
    ):
        pytest.importorskip(library)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"readme_snippet_{index}"}
    exec(compile(code, f"README.md snippet {index}", "exec"), namespace)
    assert "result" in namespace or "report" in namespace
    assert not any(tmp_path.iterdir()), "a snippet wrote into the working folder"
