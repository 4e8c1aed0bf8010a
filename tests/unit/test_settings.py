"""Settings defaults that depend on the deployment."""
from services.runtime.settings import Settings


def test_a_projector_takes_batches_of_up_to_2000_on_postgresql_and_500_on_sqlite(tmp_path, monkeypatch):
    monkeypatch.delenv("RAPPORT_BATCH_SIZE", raising=False)
    assert Settings(data_dir=tmp_path).batch_size == 500
    assert Settings(data_dir=tmp_path, database_url="postgresql://rapport@db/rapport").batch_size == 2_000
    assert Settings(data_dir=tmp_path, database_url="postgresql://rapport@db/rapport", batch_size=300).batch_size == 300
    monkeypatch.setenv("RAPPORT_BATCH_SIZE", "750")
    assert Settings(data_dir=tmp_path, database_url="postgresql://rapport@db/rapport").batch_size == 750
