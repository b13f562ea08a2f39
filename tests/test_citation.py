"""CITATION.cff is CFF 1.2.0 with the fields the format requires, and the README shows how to cite."""

import yaml

from conftest import ROOT


def test_citation_cff_required_fields():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    for key in ("message", "title", "authors"):
        assert cff[key], key
    assert all("name" in a or "family-names" in a for a in cff["authors"])
    assert "spec" in cff["message"] and "accountant" in cff["message"]
    for ref in cff.get("references", []):
        assert ref["type"] and ref["title"] and ref["authors"]


def test_readme_has_a_bibtex_entry():
    readme = (ROOT / "README.md").read_text()
    assert "## How to cite" in readme and "@software{dprepro" in readme


def test_one_version_everywhere():
    import re
    import tomllib

    import dprepro
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert dprepro.__version__ == version
    assert str(yaml.safe_load((ROOT / "CITATION.cff").read_text())["version"]) == version
    assert re.search(r"version = \{([^}]*)\}", (ROOT / "README.md").read_text()).group(1) == version
