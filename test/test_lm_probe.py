"""bench/lm_probe.py at tiny sizes on the CPU: bytes and BPE units (no quality asserted)."""

import csv
import importlib.util
import os
import random
from pathlib import Path

import pytest

from espnet2_mtla.mini import debian_text

ROOT = Path(__file__).resolve().parent.parent
WORDS = ("library", "tool", "server", "package", "data", "the", "for", "files", "python",
         "module", "network", "this", "provides", "support", "and", "of", "a", "client")


def probe():
    spec = importlib.util.spec_from_file_location("lm_probe", ROOT / "bench" / "lm_probe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def translation_index(folder: Path, packages: int = 400):
    """A small Translation-en index of the main archive in apt's layout (uncompressed)."""
    rng = random.Random(0)
    records = []
    for i in range(packages):
        sentence = lambda n: " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."
        records.append(f"Package: pkg{i}\nDescription-md5: {i:032x}\n"
                       f"Description-en: {sentence(5)}\n {sentence(12)} {sentence(9)}\n .\n"
                       f" {sentence(14)}\n")
    folder.mkdir(parents=True)
    (folder / "deb.debian.org_debian_dists_bookworm_main_i18n_Translation-en").write_text(
        "\n".join(records))


@pytest.mark.skipif(not os.path.exists(debian_text.APT_HELPER),
                    reason="apt-helper (Debian's apt) reads the index files")
@pytest.mark.parametrize("tokens", ["bytes", "bpe"])
def test_probe_trains_every_variant_on_the_same_units(tmp_path, tokens, capsys):
    translation_index(tmp_path / "lists")
    out = tmp_path / "out"
    lm_probe = probe()
    variants = ("mha", "mtla_s2", "mtla_s2+rank=32", "mtla_s2+merge=mean", "mtla_s2+prev=1",
                "mla+prev=2")
    code = lm_probe.main(["--lists_dir", str(tmp_path / "lists"), "--out", str(out),
                          "--tokens", tokens, "--vocab", "80", "--variants", *variants,
                          "--steps", "4", "--eval_every", "2", "--batch", "2", "--length", "16",
                          "--layers", "1", "--d_model", "32", "--heads", "2", "--seeds", "1", "2",
                          "--valid_windows", "2", "--jobs", "2", "--device", "cpu", "--breakdown"])
    assert code == 0
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert {(row["variant"], row["seed"], row["step"]) for row in rows} == {
        (variant, seed, step) for variant in variants for seed in ("1", "2")
        for step in ("2", "4")}
    assert all(0 < float(row["valid_loss"]) < 10 for row in rows)
    loss = {(r["variant"], r["seed"], r["step"]): float(r["valid_loss"]) for r in rows}
    for row in rows:  # each seed's ratio is to the first variant of that seed
        reference = loss["mha", row["seed"], row["step"]]
        assert float(row["ratio_to_mha"]) == pytest.approx(
            float(row["valid_loss"]) / reference, abs=1e-4)
    assert loss["mtla_s2", "1", "4"] != loss["mtla_s2", "2", "4"]  # the seed is used
    # --breakdown: the final loss split two ways, each split covering every token once
    parts = {(r["variant"], r["seed"], r["split"]): r
             for r in csv.DictReader(open(out / "breakdown_summary.csv"))}
    for variant in variants:
        for seed in ("1", "2"):
            count = {name: int(parts[variant, seed, name]["tokens"]) for name in (
                "all", "copyable", "not_copyable", "query_offset_0", "query_offset_1")}
            assert count["all"] == 2 * 16
            assert count["copyable"] + count["not_copyable"] == count["all"]
            assert count["query_offset_0"] == count["query_offset_1"] == count["all"] // 2
            assert float(parts[variant, seed, "all"]["valid_loss"]) == pytest.approx(
                loss[variant, seed, "4"], abs=2e-4)  # the last evaluation's loss
    table = capsys.readouterr().out
    assert "mean over seeds [1, 2]" in table and "1.000 +-0.000" in table
    assert "cpu, fp32" in table and (out / "device.txt").read_text() == "cpu, fp32\n"
    # a summary made elsewhere names where the curves were trained, not its own machine
    (out / "device.txt").write_text("NVIDIA H200, bf16 autocast\n")
    assert lm_probe.main(["--out", str(out), "--variants", *variants, "--seeds", "1", "2",
                          "--summarise_only", "--device", "cpu"]) is None
    again = capsys.readouterr().out
    assert "NVIDIA H200, bf16 autocast" in again and "cpu, fp32" not in again
    assert lm_probe.attention_conf(lm_probe.parse_variant("mtla_s2+rank=32"))[1]["kv_lora_rank"] == 32
    if tokens == "bpe":
        import torch

        ids = torch.load(out / "bpe80.ids.pt")
        assert 0 <= int(ids["train"].min()) and int(ids["train"].max()) < 80
        assert len(ids["valid"]) > 0 and (out / "bpe80.model").exists()


def test_copyable_targets_need_the_context_and_the_target_seen_before():
    """A target counts as copyable when it and the 4 tokens before it occurred earlier in
    the window: the second 'abcde.abcd' does from its fifth token on, the 'X' after it
    (never seen after 'abcd') does not."""
    import torch

    text = "abcde.abcde.abcdX"
    window = torch.tensor([[ord(c) for c in text]])  # targets are text[1:]
    found = probe().copyable_targets(window)[0]
    copied = {i + 1 for i in range(len(found)) if found[i]}  # positions in text
    assert copied == set(range(10, 16))  # text[10:16] == "e.abcd"; text[16] == "X"
    assert probe().copyable_targets(window, context=16).sum() == 0


def test_offset_ablation_builds_the_gain_and_refuses_what_cannot_have_it():
    lm_probe = probe()
    assert lm_probe.attention_conf(lm_probe.parse_variant("mtla_s4+offset"))[1]["offset_gain"] is True
    assert "offset_gain" not in lm_probe.attention_conf(lm_probe.parse_variant("mtla_s4"))[1]
    for bad in ("mla+offset", "mtla_s2+offset=1", "mtla_s2+offset+ref"):
        with pytest.raises(SystemExit, match="offset"):
            lm_probe.parse_variant(bad)


def test_running_mean_divides_each_column_once_whatever_the_depth(monkeypatch):
    """merge=mean patches the merge mtla.py calls: once, not once per layer (it was
    wrapped per layer, dividing a column by its count to the power of the depth)."""
    import argparse

    import torch
    from espnet2_mtla.attention import mtla

    lm_probe = probe()
    original = mtla.merge_chunks
    monkeypatch.setattr(mtla, "merge_chunks", original)  # restored after the test
    args = argparse.Namespace(
        tokens="bytes", vocab=256, d_model=32, heads=2, layers=3)
    lm_probe.build_model(lm_probe.parse_variant("mtla_s2+merge=mean"), args, seed=0)
    latent = torch.randn(1, 6, 8)
    k_pe = torch.randn(1, 6, 4)
    positions = torch.arange(6)[None]
    plain = original(latent, k_pe, positions, None, None, 2)[0]
    mean = mtla.merge_chunks(latent, k_pe, positions, None, None, 2)[0]
    count = torch.tensor([1.0, 2.0, 1.0, 2.0, 1.0, 2.0])[None, :, None]
    assert torch.allclose(mean, plain / count)


def test_previous_tokens_ablation_adds_the_tokens_before_each_query():
    """mtla_s2+prev=N: ours, with the N latents before each query as extra keys; query 0
    has none (ours' output), a query whose previous token is visible unmerged differs."""
    import torch

    from espnet2_mtla.attention.mtla import MultiheadTemporalLatentAttention

    lm_probe = probe()
    torch.manual_seed(0)
    ours = MultiheadTemporalLatentAttention(32, 2, kv_lora_rank=16, qk_nope_head_dim=8,
                                            qk_rope_head_dim=8, v_head_dim=8, down_rate=2)
    torch.nn.init.normal_(ours.hypernet_down.fc_p.weight)  # (merge weights away from 0.5)
    x = torch.randn(2, 9, 32, requires_grad=True)
    positions = torch.arange(9).expand(2, 9)
    plain = ours(x, x, position=positions)
    for previous in (1, 3):
        probe_module = lm_probe.PreviousTokensModule(ours, previous)
        out = probe_module(x, x, position=positions)
        torch.testing.assert_close(out[:, 0], plain[:, 0])
        assert (out[:, 1:] - plain[:, 1:]).abs().amax(-1).min() > 1e-4
        out.sum().backward()
        assert torch.isfinite(x.grad).all() and ours.wkv_a.weight.grad.abs().sum() > 0
        x.grad = None
    assert lm_probe.parse_variant("mtla_s2+prev=2")["prev"] == "2"
    assert lm_probe.parse_variant("mla+prev=4")["prev"] == "4"  # (the control)
    for bad in ("mha+prev=1", "mtla_s2+prev=0", "mtla_s2+prev=x", "mtla_s2+prev=1+ref",
                "mtla_s2+prev=1+offset"):
        with pytest.raises(SystemExit):
            lm_probe.parse_variant(bad)
    with pytest.raises(ValueError, match="unpadded"):
        lm_probe.PreviousTokensModule(ours, 1)(x, x, position=positions,
                                               key_padding_mask=torch.zeros(2, 9, dtype=bool))


def test_mla_layers_ablation_unmerges_the_listed_layers_only():
    from argparse import Namespace

    from espnet2_mtla.attention.mla import MultiHeadLatentAttention

    lm_probe = probe()
    args = Namespace(tokens="bytes", vocab=256, d_model=32, heads=2, layers=3)
    model = lm_probe.build_model(lm_probe.parse_variant("mtla_s2+mla_layers=0,2"), args, seed=1)
    kinds = [type(layer.attn) is MultiHeadLatentAttention for layer in model.layers]
    assert kinds == [True, False, True]
    assert model.layers[1].attn.down_rate == 2
    assert model.layers[0].attn.kv_lora_rank == model.layers[1].attn.kv_lora_rank == 128
    for bad in ("mla+mla_layers=0", "mtla_s2+mla_layers=a", "mtla_s2+mla_layers=0+ref"):
        with pytest.raises(SystemExit, match="mla_layers"):
            lm_probe.parse_variant(bad)
    with pytest.raises(SystemExit, match="3 layers"):
        lm_probe.build_model(lm_probe.parse_variant("mtla_s2+mla_layers=3"), args, seed=1)


def test_merge_ablations_change_only_the_merge_weights_and_columns(monkeypatch):
    """merge=channel starts where the module starts (every weight 0.5) and then weighs
    each channel apart; pe= changes what the weight sees of a token's position; norm=rms
    normalises every merged column once, whatever the depth."""
    from argparse import Namespace

    import torch
    from espnet2_mtla.attention import mtla

    lm_probe = probe()
    monkeypatch.setattr(mtla, "merge_chunks", mtla.merge_chunks)  # restored after the test
    args = Namespace(tokens="bytes", vocab=256, d_model=32, heads=2, layers=2)
    rows = torch.randint(0, 256, (2, 12))
    plain = lm_probe.build_model(lm_probe.parse_variant("mtla_s2"), args, seed=3)
    channel = lm_probe.build_model(lm_probe.parse_variant("mtla_s2+merge=channel"), args, seed=3)
    torch.testing.assert_close(lm_probe.next_token_logits(channel, rows)[0],
                               lm_probe.next_token_logits(plain, rows)[0])  # w = 0.5 both
    net = channel.layers[0].attn.hypernet_down
    torch.nn.init.normal_(net.fc_o.weight)
    latent, positions = torch.randn(2, 12, 128), torch.arange(12).expand(2, 12)
    weights = net(latent, positions)
    assert weights.shape == (2, 12, 128) and weights.std(-1).min() > 0.05
    assert sum(p.numel() for p in channel.parameters()) - sum(
        p.numel() for p in plain.parameters()) == 2 * (32 * 128 + 128)  # fc_o per layer

    same = latent[:, :1].expand(2, 12, 128)  # one latent at every position
    for encoding, differs_in_chunk in (("chunk", False), ("position", True),
                                       ("offset", True), ("none", False)):
        model = lm_probe.build_model(lm_probe.parse_variant(f"mtla_s2+pe={encoding}"), args, 3)
        net = model.layers[1].attn.hypernet_down
        torch.nn.init.normal_(net.fc_p.weight, std=0.05)  # (sigmoid unsaturated)
        w = net(same, positions)[0, :, 0]  # (T,)
        assert ((w[0] - w[1]).abs() > 1e-6) == differs_in_chunk, encoding
        assert ((w[0] - w[2]).abs() > 1e-6) == (encoding in ("chunk", "position")), encoding

    lm_probe.build_model(lm_probe.parse_variant("mtla_s2+norm=rms"), args, seed=3)
    columns = mtla.merge_chunks(torch.randn(1, 6, 8) * 5, torch.randn(1, 6, 4),
                                torch.arange(6)[None], None, None, 2)[0]
    torch.testing.assert_close(columns.pow(2).mean(-1), torch.ones(1, 6), atol=1e-4, rtol=0)
    for bad in ("mha+pe=position", "mtla_s2+pe=x", "mtla_s2+norm=ln", "mla+norm=rms",
                "mtla_s2+merge=one+pe=none", "mtla_s2+ref+pe=offset", "mtla_s2+prev=1+norm=rms"):
        with pytest.raises(SystemExit):
            lm_probe.parse_variant(bad)
