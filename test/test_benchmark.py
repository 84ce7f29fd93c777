"""The benchmark script runs end to end at tiny sizes on the CPU (no timing asserted)."""

import csv

from espnet2_mtla.benchmark.variants import VARIANTS
from espnet2_mtla.bin.benchmark import main


def test_benchmark_smoke_run_writes_every_section(tmp_path):
    main(["--tiny", "--device", "cpu", "--dtype", "float32", "--out", str(tmp_path),
          "--batches", "2", "--lengths", "32", "--beams", "2", "--utterances", "2",
          "--prefix_len", "8", "--output_len", "3", "--train_shapes", "2x16",
          "--repeats", "1", "--copy_mb", "4", "--variants", "mha", "mla", "mtla_s2"])
    decode = list(csv.DictReader(open(tmp_path / "decode.csv")))
    assert {row["variant"] for row in decode} == {"mha_paper", "mha", "mla", "mtla_s2"}
    beam = list(csv.DictReader(open(tmp_path / "beam.csv")))
    assert {row["variant"] for row in beam} == {"mha_paper", "mha", "mla", "mtla_s2"}
    by_variant = {row["variant"]: float(row["peak_cache_MB"]) for row in beam}
    assert by_variant["mtla_s2"] < by_variant["mla"] < by_variant["mha"]  # the cache shrinks
    train = {row["variant"]: row for row in csv.DictReader(open(tmp_path / "train.csv"))}
    assert set(train) == {"mha", "mla", "mtla_s2"}
    assert (train["mha"]["batch"], train["mha"]["tokens"]) == ("2", "16")
    assert float(train["mha"]["ratio_to_mha"]) == 1.0
    assert float(train["mha"]["flops_ratio_to_mha"]) == 1.0
    # MLA's query-key is wider than MHA's head and it has the latent projections: more
    # arithmetic per step (the bound the table prints beside each time ratio)
    assert float(train["mla"]["flops_ratio_to_mha"]) > 1.0
    assert float(train["mla"]["ratio_to_mha"]) > 0
    assert set(VARIANTS) >= {"mha", "mla", "mtla_s2"}
    main(["--plot", "--out", str(tmp_path)])
    assert (tmp_path / "decode.png").exists() and (tmp_path / "beam.png").exists()
