"""The README's configuration table stays true to Settings."""

from conftest import ROOT
from livehub.settings import Settings


def env_names(name: str, field) -> set[str]:
    alias = field.validation_alias
    if alias is not None:
        return {a for a in alias.choices if not a.startswith("LIVEHUB_")}
    return {f"LIVEHUB_{name.upper()}"}


def test_every_setting_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    missing = [
        env for name, field in Settings.model_fields.items() for env in env_names(name, field) if env not in readme
    ]
    assert missing == []
