"""Settings defaults that depend on the deployment."""
import os
import re
from pathlib import Path

from services.runtime.settings import Settings


def test_a_projector_takes_batches_of_up_to_2000_on_postgresql_and_500_on_sqlite(tmp_path, monkeypatch):
    monkeypatch.delenv("RAPPORT_BATCH_SIZE", raising=False)
    assert Settings(data_dir=tmp_path).batch_size == 500
    assert Settings(data_dir=tmp_path, database_url="postgresql://rapport@db/rapport").batch_size == 2_000
    assert Settings(data_dir=tmp_path, database_url="postgresql://rapport@db/rapport", batch_size=300).batch_size == 300
    monkeypatch.setenv("RAPPORT_BATCH_SIZE", "750")
    assert Settings(data_dir=tmp_path, database_url="postgresql://rapport@db/rapport").batch_size == 750


def test_the_readme_lists_every_setting_with_its_default(tmp_path, monkeypatch):
    """The README's settings table is what operators read: every setting has a row, and a
    default written as a literal is what Settings takes without the variable (it said 5,000
    for the replay batch size after the default had become 50,000)."""
    for name in [n for n in os.environ if n.startswith("RAPPORT_")]:
        monkeypatch.delenv(name)
    rows = _settings_rows((Path(__file__).parents[2] / "README.md").read_text())
    variables = {f"RAPPORT_{name.upper()}": name for name in Settings.model_fields}
    assert sorted(set(variables) - {v for names, _ in rows for v in names}) == []
    default, checked = Settings(data_dir=tmp_path), 0
    for names, literals in rows:
        assert set(names) <= set(variables), names  # no row for a setting that doesn't exist
        for variable, literal in zip(names, literals or ()):
            monkeypatch.setenv(variable, literal)
            field = variables[variable]
            assert getattr(Settings(data_dir=tmp_path), field) == getattr(default, field), (variable, literal)
            monkeypatch.delenv(variable)
            checked += 1
    assert checked >= 20


def _settings_rows(readme: str) -> list[tuple[list[str], list[str] | None]]:
    """(variables, their defaults when the cell is only literals, one each) per table row."""
    section = readme.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if line.startswith("| `RAPPORT_"):
            names_cell, default_cell = line.split(" | ")[:2]
            names = re.findall(r"`(RAPPORT_\w+)`", names_cell)
            literals = re.findall(r"`([^`]*)`", default_cell)
            only_literals = re.fullmatch(r"(`[^`]*`(, )?)+", default_cell.strip())
            rows.append((names, literals if only_literals and len(literals) == len(names) else None))
    return rows
