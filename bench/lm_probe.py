"""A small language-model probe on real text: does MTLA train as well as MHA/MLA, and
which change to MTLA's training closes the gap?

Language models (``DecoderOnlyStack``, no prefix) on the English package descriptions
of Debian's ``Translation-en`` index (the text mini_en speaks), over bytes or, with
``--tokens bpe --vocab N``, over sentencepiece BPE units learned once on the training
part (the units the paper's tasks use: merging two neighbours in time then spans about
two words' pieces, not two letters); packages whose name hashes to 0 mod 50 are held out
for validation. Every variant sees the same batches in the same order (one seed) and is
evaluated on the same validation windows. With several ``--seeds`` each variant trains
once per seed (weights and batches both follow the seed) and the table gives each
variant's ratio to the first variant of the same seed, averaged over the seeds, with
half the range: the LM probe's gaps move by a few percent with the seed (MTLA s=2: 2.1
and 4.5 % at seeds 1 and 2, bench/results/h200_2026-12-02_s24), more than one seed's
repeats do.

A variant is an attention name from ``conf/attention/`` (at the probe's sizes: r 128,
rope 32, nope/value 64) with optional ablations joined by ``+``:

    mtla_s2+lr=2e-3       peak learning rate (default --lr)
    mtla_s2+warmup=1000   warm-up steps (default --warmup)
    mtla_s2+rope=64       qk_rope_head_dim
    mtla_s2+rank=256      kv_lora_rank (default 128; MTLA s=2 at 256 holds MLA's cache at
                          128: is the gap the merged latent's width?)
    mtla_s2+merge=random  merge hyper-network's fc_p with nn.Linear's random start (the
                          reference package's) instead of the module's zero start (every
                          weight starts at sigmoid(0) = 0.5 and is learned from there)
    mtla_s2+merge=one     no hyper-network: w = 1 (plain sum of the chunk's latents)
    mtla_s2+merge=mean    learned weights, merged latent divided by the number of tokens
                          merged so far (a running weighted mean instead of a sum)
    mtla_s2+merge=channel a weight per latent channel instead of one per token:
                          w_j = sigmoid(W_o((W_c PE) * (W_p c_j))) (r numbers; W_o starts
                          at zero, so every weight starts at 0.5, W_p at nn.Linear's
                          random start): a chunk can keep each of its tokens in channels
                          of its own, chosen by content (offset gain's gains are fixed).
                          Copying recovers, the rest hardly: s=2 +2.9 % against +3.8 %
                          (bench/results/h200_2026-12-03_s31)
    mtla_s2+pe=position   what the merge hyper-network's position encoding PE encodes:
                          chunk (the module's: floor(p / s), every token of a chunk alike),
                          position (p: the weight may depend on the offset in the chunk),
                          offset (p mod s only, nothing absolute), none (PE(0) for all: a
                          learned constant, the weight from the latent's content alone)
    mtla_s2+norm=rms      each merged column RMS-normalised over its r channels (no gain;
                          a chunk's latent at one token's scale whatever its weights sum to)
    mtla_s2+offset        a learned gain per offset in the chunk on the normalised latent
                          (attention_conf offset_gain: a merged chunk can keep its tokens
                          in different channels)
    mtla_s2+ref           the reference ``mtla`` package's module in every layer, with
                          the same initial weights (needs ``pip install mtla``)
    mtla_s2+prev=1        each query also sees the latents of the N tokens before it
                          unmerged (normalised, no merge weight, their own rope keys),
                          beside the merged chunks: is the gap that the token before a
                          query is never seen on its own? (training path only: a
                          decoding cache would hold N extra entries per row; mla+prev=N
                          is the control: the same recent keys twice, nothing merged).
                          At full size it helps for ~500 steps, then stalls well above
                          plain MTLA (bench/results/h200_2026-12-02_s27)
    mtla_s2+mla_layers=0  the listed layers (0-based, joined by commas: 0,1) take MLA
                          (MLA at the same sizes, nothing merged), the others
                          MTLA: is the gap one of the layers, e.g. the first, which builds
                          each byte's local context? (the cache grows by those layers' share)

Each variant and seed runs in its own process (``--jobs`` at once on one GPU) and writes
``<out>/seed<k>/<variant>.csv`` (step, train loss, validation loss, seconds) as it goes,
so an interrupted run keeps its curves; the parent prints the validation-loss table with
the ratio to the first variant and writes ``<out>/summary.csv``. ``--breakdown`` splits
each run's final validation loss by kind of token (``<out>/seed<k>/<variant>.breakdown.csv``,
``<out>/breakdown_summary.csv``): copyable (the token and the 4 before it occurred
earlier in the window, what attention can copy) or not, and the query's offset in a chunk
of two (at offset 1 MTLA s=2 has merged the query's own token with the one before it):
where in the text a variant's gap lies.

    python bench/lm_probe.py --lists_dir .gpu --out exp/lm_probe \
        --variants mha mla mtla_s2 mtla_s2+merge=random --steps 3000 --jobs 6 --seeds 1 2
"""

import argparse
import csv
import math
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
ATTENTIONS = ("mha", "mla", "mtla_s2", "mtla_s3", "mtla_s4", "mqa", "gqa2", "gqa4")
ABLATIONS = ("lr", "warmup", "rope", "rank", "merge", "ref", "offset", "prev", "mla_layers",
             "pe", "norm")
FLAGS = ("ref", "offset")  # ablations without a value
MERGES = ("learned", "random", "one", "mean", "channel")
ENCODINGS = ("chunk", "position", "offset", "none")  # pe=: what PE of the hyper-network encodes
NORMS = ("rms",)


def parse_variant(spec: str) -> dict:
    """'mtla_s2+lr=2e-3+ref' -> {'attention': 'mtla_s2', 'lr': '2e-3', 'ref': True}."""
    name, *parts = spec.split("+")
    if name not in ATTENTIONS:
        raise SystemExit(f"variant {spec!r}: attention {name!r} is not one of {ATTENTIONS}")
    out = {"attention": name}
    for part in parts:
        key, _, value = part.partition("=")
        if key not in ABLATIONS:
            raise SystemExit(f"variant {spec!r}: unknown ablation {key!r}; known: {ABLATIONS}")
        if key == "merge" and value not in MERGES:
            raise SystemExit(f"variant {spec!r}: merge={value!r} is not one of {MERGES}")
        if key == "pe" and value not in ENCODINGS:
            raise SystemExit(f"variant {spec!r}: pe={value!r} is not one of {ENCODINGS}")
        if key == "norm" and value not in NORMS:
            raise SystemExit(f"variant {spec!r}: norm={value!r} is not one of {NORMS}")
        if key in FLAGS and value:
            raise SystemExit(f"variant {spec!r}: {key} takes no value")
        if key not in FLAGS and not value:
            raise SystemExit(f"variant {spec!r}: {key} needs a value ({key}=...)")
        out[key] = value if key not in FLAGS else True
    if not name.startswith("mtla") and ({"merge", "ref", "offset", "pe", "norm"} & out.keys()):
        raise SystemExit(f"variant {spec!r}: merge/ref/offset/pe/norm apply to mtla_* only")
    if {"ref", "prev"} & out.keys() and {"pe", "norm"} & out.keys():
        raise SystemExit(f"variant {spec!r}: pe/norm change our module (no ref, no prev)")
    if out.get("merge") in ("one", "random", "mean") and "pe" in out:
        raise SystemExit(f"variant {spec!r}: pe applies to the learned or channel merge")
    if not name.startswith(("mtla", "mla")) and "prev" in out:
        raise SystemExit(f"variant {spec!r}: prev applies to mla and mtla_* only")
    if {"ref", "offset"} <= out.keys():
        raise SystemExit(f"variant {spec!r}: the reference module has no offset gain")
    if {"ref", "prev"} <= out.keys() or {"offset", "prev"} <= out.keys():
        raise SystemExit(f"variant {spec!r}: prev replaces the module (no ref, no offset gain)")
    if "prev" in out and not (out["prev"].isdigit() and int(out["prev"]) >= 1):
        raise SystemExit(f"variant {spec!r}: prev=N needs a whole number N >= 1")
    if "mla_layers" in out:
        if not name.startswith("mtla") or {"ref", "prev"} & out.keys():
            raise SystemExit(f"variant {spec!r}: mla_layers applies to mtla_* (no ref, no prev)")
        if not all(part.isdigit() for part in out["mla_layers"].split(",")):
            raise SystemExit(f"variant {spec!r}: mla_layers takes layer numbers joined by commas")
    return out


def load_lines(lists_dir: Path):
    """(train lines, valid lines): one description per line."""
    from espnet2_mtla.mini.debian_text import load_descriptions

    train, valid = [], []
    for d in load_descriptions(lists_dir):
        line = " ".join((d.synopsis,) + d.paragraphs)
        (valid if zlib.crc32(d.package.encode()) % 50 == 0 else train).append(line)
    return train, valid


def load_text(lists_dir: Path):
    """(train bytes, valid bytes) as uint8 tensors: one description per line."""
    as_bytes = lambda lines: torch.frombuffer(bytearray("\n".join(lines).encode()), dtype=torch.uint8)
    return tuple(as_bytes(lines) for lines in load_lines(lists_dir))


def load_tokens(args):
    """(train ids, valid ids, vocabulary size): bytes, or BPE ids of the text (the model
    and the ids prepared once by the parent in --out: prepare_bpe)."""
    if args.tokens == "bytes":
        train, valid = load_text(Path(args.lists_dir))
        return train, valid, 256
    ids = torch.load(bpe_paths(args)[1])
    return ids["train"], ids["valid"], args.vocab


def bpe_paths(args):
    prefix = Path(args.out) / f"bpe{args.vocab}"
    return prefix, prefix.with_suffix(".ids.pt")


def prepare_bpe(args):
    """Learn --vocab BPE units on the training text (sentencepiece) and store the ids of
    the training and validation text, one description per line."""
    import sentencepiece

    prefix, ids_path = bpe_paths(args)
    if ids_path.exists():
        return
    train, valid = load_lines(Path(args.lists_dir))
    text = prefix.with_suffix(".train.txt")
    text.write_text("\n".join(train))
    sentencepiece.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(prefix), vocab_size=args.vocab, model_type="bpe",
        character_coverage=1.0, input_sentence_size=200000, shuffle_input_sentence=True,
        bos_id=-1, eos_id=-1, unk_id=0, minloglevel=2)
    model = sentencepiece.SentencePieceProcessor(model_file=str(prefix.with_suffix(".model")))
    newline = model.piece_to_id("<unk>")  # (lines joined by the unknown id: a separator)

    def encode(lines):
        ids = []
        for line in model.encode(lines):
            ids.extend(line + [newline])
        return torch.tensor(ids, dtype=torch.int32)

    torch.save({"train": encode(train), "valid": encode(valid)}, ids_path)
    text.unlink()


def attention_conf(variant: dict) -> tuple:
    """(attention type, attention_conf) at the probe's sizes."""
    import yaml

    conf = yaml.safe_load((ROOT / "conf" / "attention" / f"{variant['attention']}.yaml").read_text())
    attn, kwargs = conf["attention"], dict(conf.get("attention_conf") or {})
    if attn in ("mla", "mtla"):
        kwargs.update(kv_lora_rank=int(variant.get("rank", 128)), qk_nope_head_dim=64,
                      v_head_dim=64, qk_rope_head_dim=int(variant.get("rope", 32)))
    if variant.get("offset"):
        kwargs["offset_gain"] = True
    return attn, kwargs


def curve_path(out, spec: str, seed: int) -> Path:
    return Path(out) / f"seed{seed}" / f"{spec}.csv"


def build_model(variant: dict, args, seed: int):
    from espnet2_mtla.attention import build_attention
    from espnet2_mtla.model.decoder import DecoderOnlyStack

    attn, kwargs = attention_conf(variant)
    torch.manual_seed(seed)
    model = DecoderOnlyStack(args.vocab if args.tokens == "bpe" else 256, d_model=args.d_model, num_heads=args.heads,
                             num_layers=args.layers, ffn_dim=4 * args.d_model, dropout=0.0,
                             attention=attn, attention_conf=kwargs)
    mla_layers = [int(i) for i in variant["mla_layers"].split(",")] if "mla_layers" in variant else []
    if any(i >= args.layers for i in mla_layers):
        raise SystemExit(f"mla_layers {variant['mla_layers']}: the probe has {args.layers} layers")
    mla_conf = {k: v for k, v in kwargs.items() if k not in ("down_rate", "offset_gain")}
    for i in mla_layers:  # MLA at the same sizes (built after the stack: its own weights)
        model.layers[i].attn = build_attention("mla", args.d_model, args.heads, **mla_conf)
    merge = variant.get("merge", "learned")
    # merge=mean, norm=rms: once for all layers (they patch the function mtla.py calls)
    from espnet2_mtla.attention import mtla
    if merge == "mean":
        mtla.merge_chunks = with_columns_changed(mtla.merge_chunks, running_mean)
    if variant.get("norm") == "rms":
        mtla.merge_chunks = with_columns_changed(mtla.merge_chunks, rms_normalised)
    for number, layer in enumerate(model.layers):
        module = layer.attn
        if number in mla_layers:
            continue
        if merge == "random":
            module.hypernet_down.fc_p.reset_parameters()
        elif merge == "one":
            module.hypernet_down.forward = lambda latent, positions, layouts=None: (
                latent.new_ones(latent.shape[:-1] + (1,)))
        elif merge == "channel":
            module.hypernet_down = ChannelMergeWeights(module.hypernet_down,
                                                       variant.get("pe", "chunk"))
        if "pe" in variant and merge != "channel":
            module.hypernet_down.forward = with_encoding(module.hypernet_down, variant["pe"])
        if variant.get("ref"):
            layer.attn = ReferenceModule(module)
        elif variant.get("prev"):
            layer.attn = PreviousTokensModule(module, int(variant["prev"]))
    return model


def with_columns_changed(merge_chunks, change):
    """Wrap ``merge_chunks`` so its columns (B, T, r) become change(columns, positions,
    rate) (patched where mtla.py calls it: each variant trains in its own process)."""
    def wrapped(latent, k_pe, positions, padding, carry, rate, *more, **options):
        columns, *rest = merge_chunks(latent, k_pe, positions, padding, carry, rate, *more,
                                      **options)
        return (change(columns, positions, rate), *rest)
    return wrapped


def running_mean(columns, positions, rate):
    """merge=mean: each column divided by the tokens merged into it."""
    count = (positions % rate + 1).to(columns.dtype)  # (B, T)
    return columns / count[..., None]


def rms_normalised(columns, positions, rate):
    """norm=rms: each column RMS-normalised over its channels (no gain)."""
    return F.rms_norm(columns, columns.shape[-1:], eps=1e-6)


def encoded_index(positions, down_rate: int, encoding: str):
    """(B, T): the index whose PE the merge hyper-network sees under pe=``encoding``
    (chunk: the module's own, floor(p / s))."""
    return {"chunk": lambda: torch.div(positions, down_rate, rounding_mode="floor"),
            "position": lambda: positions, "offset": lambda: positions % down_rate,
            "none": lambda: torch.zeros_like(positions)}[encoding]()


def with_encoding(hypernet, encoding: str):
    """The module's own merge weight (its forward) with PE of ``encoded_index``: positions
    are mapped to index * s, whose chunk floor(. / s) is the index. No ``layouts``: they
    would share the chunks' PE of the unmapped positions between layers."""
    forward, s = hypernet.forward, hypernet.down_rate
    return lambda latent, positions, layouts=None: forward(
        latent, encoded_index(positions, s, encoding) * s)


class ChannelMergeWeights(torch.nn.Module):
    """merge=channel: w_j = sigmoid(W_o((W_c PE) * (W_p c_j))), (B, T, r): one weight per
    latent channel, PE of ``encoded_index`` (pe=). W_c from the module's hyper-network;
    W_p re-drawn at nn.Linear's random start (with W_o at zero both would get no
    gradient); W_o (r/4 -> r) at zero."""

    def __init__(self, hypernet, encoding: str = "chunk"):
        super().__init__()
        self.fc_c, self.fc_p = hypernet.fc_c, hypernet.fc_p
        self.fc_p.reset_parameters()
        self.down_rate, self.kv_lora_rank = hypernet.down_rate, hypernet.kv_lora_rank
        self.encoding = encoding
        self.fc_o = torch.nn.Linear(self.fc_p.out_features, self.kv_lora_rank)
        torch.nn.init.zeros_(self.fc_o.weight)
        torch.nn.init.zeros_(self.fc_o.bias)

    def forward(self, latent, positions, layouts=None):  # -> (B, T, r)
        from espnet2_mtla.attention.mtla import sinusoidal_embedding

        index = encoded_index(positions, self.down_rate, self.encoding)
        embedding = sinusoidal_embedding(index, self.kv_lora_rank).to(latent.dtype)
        return torch.sigmoid(self.fc_o(self.fc_c(embedding) * self.fc_p(latent)))


class ReferenceModule(torch.nn.Module):
    """The reference package's MTLA with the weights of ``ours``, called as ours is."""

    def __init__(self, ours):
        super().__init__()
        from mtla import MultiheadTemporalLatentAttention as Reference

        self.inner = Reference(
            ours.embed_dim, ours.num_heads, q_lora_rank=ours.q_lora_rank,
            kv_lora_rank=ours.kv_lora_rank, qk_nope_head_dim=ours.qk_nope_head_dim,
            qk_rope_head_dim=ours.qk_rope_head_dim, v_head_dim=ours.v_head_dim,
            down_rate=ours.down_rate)
        self.inner.load_state_dict(ours.state_dict())
        # its rotary table is built with torch.polar, which has no bf16 kernel: keep it
        # out of autocast (ours computes the angles in fp32 too)
        rotary_table = self.inner._compute_freqs_cis_batch
        self.inner._compute_freqs_cis_batch = lambda *a: _without_autocast(rotary_table, *a)

    def forward(self, query, key, position=None, key_padding_mask=None, cache=None,
                unmerged_tokens=0, layouts=None):  # (nothing unmerged, nothing shared)
        if key_padding_mask is not None or cache is not None or unmerged_tokens:
            raise ValueError("the reference probe runs unpadded training batches only")
        return self.inner(query, key, key, position=position.float())


class PreviousTokensModule(torch.nn.Module):
    """Ours (``ours``, its weights), with each query also seeing the N tokens before it
    unmerged: keys = the stride-aware chunk columns (as ours) + every token's normalised
    latent and rope key, of which query i sees tokens i - N .. i - 1 (an ablation of what
    merging hides from a query; unpadded training and validation batches only)."""

    def __init__(self, ours, previous: int):
        super().__init__()
        self.inner, self.previous = ours, previous

    def forward(self, query, key, position=None, key_padding_mask=None, cache=None,
                unmerged_tokens=0, layouts=None):
        from espnet2_mtla.attention import mtla  # (its merge_chunks: merge=mean patches it)

        if key_padding_mask is not None or cache is not None or unmerged_tokens:
            raise ValueError("the previous-tokens probe runs unpadded training batches only")
        m = self.inner
        length = query.shape[1]
        # q_nope, q_pe (B, T, H, d); latent (B, T, r), k_pe (B, T, d_r): as ours projects
        q_nope, q_pe, latent, k_pe = m._project(query, key, position)
        weighted = latent * m.hypernet_down(latent, position) if m.has_merge_weights else latent
        columns = mtla.merge_chunks(weighted, k_pe, position, None, None, m.down_rate,
                                    with_entries=False)[0]  # (B, T, r)
        merged_visible = m._stride_aware_mask(position, length, None)  # (B, T, T)
        back = position[:, :, None] - position[:, None, :]  # (B, T, T): p_i - p_j
        previous_visible = (back >= 1) & (back <= self.previous)
        visible = torch.cat([merged_visible, previous_visible], dim=2)  # (B, T, 2T)
        return m._expanded_attention(q_nope, q_pe, torch.cat([columns, latent], 1),
                                     torch.cat([k_pe, k_pe], 1), visible, None)


def _without_autocast(function, *args):
    with torch.autocast("cuda", enabled=False), torch.autocast("cpu", enabled=False):
        return function(*args)


def batches(data: torch.Tensor, batch: int, length: int, seed: int, device):
    """Endless (B, length + 1) windows at seeded random offsets."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        start = torch.randint(0, len(data) - length - 1, (batch,), generator=generator)
        rows = torch.stack([data[s : s + length + 1] for s in start.tolist()])
        yield rows.to(device=device, dtype=torch.long, non_blocking=True)


def next_token_logits(model, rows):
    """Logits (B * L, V), float, and targets (B * L,) of windows rows (B, L + 1)."""
    tokens, targets = rows[:, :-1], rows[:, 1:]
    batch, length = tokens.shape
    positions = torch.arange(length, device=rows.device).expand(batch, length)
    hidden = model(model.embed(tokens), positions, None)
    return model.logits(hidden).float().flatten(0, 1), targets.flatten()


def lm_loss(model, rows):
    return F.cross_entropy(*next_token_logits(model, rows))


def token_losses(model, rows):
    """Next-token losses (B, L) of windows rows (B, L + 1)."""
    return F.cross_entropy(*next_token_logits(model, rows), reduction="none").view(
        rows.shape[0], rows.shape[1] - 1)


@torch.no_grad()
def validation_losses(model, windows, batch) -> torch.Tensor:
    """Next-token losses (N, L), on the CPU, of the validation windows (N, L + 1): the one
    evaluation loop (their mean is the validation loss; ``loss_by_kind`` splits them)."""
    model.eval()
    losses = []  # (B, L) per batch
    for i in range(0, len(windows), batch):
        with torch.autocast(windows.device.type, dtype=torch.bfloat16,
                            enabled=windows.device.type == "cuda"):
            losses.append(token_losses(model, windows[i : i + batch]).cpu())
    model.train()
    return torch.cat(losses)


COPY_CONTEXT = 4  # tokens of context an earlier occurrence must share to count as a copy


def copyable_targets(windows: torch.Tensor, context: int = COPY_CONTEXT) -> torch.Tensor:
    """(N, L) bool of windows (N, L + 1): whether target t (windows[:, t + 1]) with the
    ``context`` tokens before it occurred earlier in the same window, so that attending
    to the token after that earlier occurrence would predict it (what an induction head
    copies)."""
    rows = windows.tolist()
    found = torch.zeros(windows.shape[0], windows.shape[1] - 1, dtype=torch.bool)
    for i, row in enumerate(rows):
        seen = set()
        for t in range(context, len(row)):
            gram = tuple(row[t - context : t + 1])  # the context and the target at t
            found[i, t - 1] = gram in seen
            seen.add(gram)
    return found


def loss_by_kind(losses, windows) -> dict:
    """The validation losses (N, L) of windows (N, L + 1) split by what predicting the
    token needs: copyable (an earlier occurrence of the token and its context in the
    window) or not, and by the query's offset in a chunk of two (1: MTLA s=2 has merged
    the query with the token before it). {split: (tokens, mean loss)}."""
    copyable = copyable_targets(windows.cpu())
    odd = (torch.arange(losses.shape[1]) % 2 == 1).expand_as(losses)
    splits = {"all": torch.ones_like(copyable), "copyable": copyable, "not_copyable": ~copyable,
              "query_offset_0": ~odd, "query_offset_1": odd}
    return {name: (int(m.sum()), losses[m].mean().item() if m.any() else float("nan"))
            for name, m in splits.items()}


def breakdown_path(out, spec: str, seed: int) -> Path:
    return Path(out) / f"seed{seed}" / f"{spec}.breakdown.csv"


def train_one(spec: str, seed: int, args):
    variant = parse_variant(spec)
    device = torch.device(args.device)
    train, valid, _ = load_tokens(args)
    n_valid = min(args.valid_windows, (len(valid) - 1) // (args.length + 1))
    step = (len(valid) - 1) // n_valid
    windows = torch.stack([valid[i * step : i * step + args.length + 1] for i in range(n_valid)])
    windows = windows.to(device=device, dtype=torch.long)
    model = build_model(variant, args, seed).to(device)
    lr, warmup = float(variant.get("lr", args.lr)), int(variant.get("warmup", args.warmup))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)

    def schedule(i):  # linear warm-up, cosine to 10 %
        if i < warmup:
            return (i + 1) / warmup
        return 0.1 + 0.45 * (1 + math.cos(math.pi * (i - warmup) / max(1, args.steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    out = curve_path(args.out, spec, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = batches(train, args.batch, args.length, seed, device)
    started, running = time.time(), []
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "train_loss", "valid_loss", "seconds"])
        for i in range(1, args.steps + 1):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = lm_loss(model, next(data))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            running.append(loss.detach())
            if i % args.eval_every == 0 or i == args.steps:
                train_loss = torch.stack(running).mean().item()
                running = []
                losses = validation_losses(model, windows, args.batch)  # (N, L)
                writer.writerow([i, f"{train_loss:.4f}", f"{losses.mean().item():.4f}",
                                 f"{time.time() - started:.1f}"])
                f.flush()
    if args.breakdown:
        with open(breakdown_path(args.out, spec, seed), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["split", "tokens", "valid_loss"])
            for name, (count, value) in loss_by_kind(losses, windows).items():  # (the last)
                writer.writerow([name, count, f"{value:.4f}"])


def device_words(device: str) -> str:
    if device == "cuda":
        return f"{torch.cuda.get_device_name()}, bf16 autocast"
    return f"{device}, fp32"


def recorded_device(out: str) -> str:
    """Where the curves in <out> were trained: <out>/device.txt, which a run writes (a
    --summarise_only elsewhere must not name its own machine)."""
    path = Path(out) / "device.txt"
    return path.read_text().strip() if path.exists() else "device not recorded"


def summarise(args):
    """Print the table of validation losses and write <out>/summary.csv (one row per
    variant, seed and evaluation, with the ratio to the first variant of that seed)."""
    curves = {}  # (variant, seed) -> {step: csv row}
    for spec in args.variants:
        for seed in args.seeds:
            path = curve_path(args.out, spec, seed)
            if path.exists():
                with open(path) as f:
                    curves[spec, seed] = {int(r["step"]): r for r in csv.DictReader(f)}
    steps = sorted({s for c in curves.values() for s in c})
    base = args.variants[0]

    def ratio(spec, seed, step):
        ref = curves.get((base, seed), {}).get(step)
        if ref is None:
            return None
        return float(curves[spec, seed][step]["valid_loss"]) / float(ref["valid_loss"])

    rows, partial = [], False
    unit = "byte" if args.tokens == "bytes" else f"BPE unit, {args.vocab} units"
    several = len(args.seeds) > 1
    what = (f"ratio to {base} of the same seed, mean over seeds {args.seeds} +- half the range"
            if several else f"ratio to {base} in brackets")
    print(f"\nvalidation loss (nats/{unit}); {what}; "
          f"{args.layers} layers, d {args.d_model}, {args.batch} x {args.length} tokens, "
          f"{recorded_device(args.out)}")
    print(f"{'variant':28s}" + "".join(f"{s:>16d}" for s in steps) + f"{'s/step':>9s}")
    for spec in args.variants:
        seeds = [seed for seed in args.seeds if curves.get((spec, seed))]
        if not seeds:
            print(f"{spec:28s} (no evaluation written)")
            continue
        cells = []
        for step in steps:
            have = [seed for seed in seeds if step in curves[spec, seed]]
            ratios = []  # of the seeds whose first variant reached this step too
            for seed in have:
                row = curves[spec, seed][step]
                r = ratio(spec, seed, step)
                if r is not None:
                    ratios.append(r)
                rows.append([spec, seed, step, row["train_loss"], row["valid_loss"],
                             "" if r is None else f"{r:.4f}", row["seconds"]])
            if not have:
                cells.append(f"{'-':>16s}")
            elif several:
                if not ratios:
                    cells.append(f"{'(no ' + base + ')':>16s}")
                else:
                    half = (max(ratios) - min(ratios)) / 2
                    partial |= len(ratios) < len(args.seeds)
                    cells.append(f"{sum(ratios) / len(ratios):>8.3f} +-{half:.3f}"
                                 + ("" if len(ratios) == len(args.seeds) else "*"))
            else:
                v = float(curves[spec, have[0]][step]["valid_loss"])
                cells.append(f"{v:>8.4f}" + (f" ({ratios[0]:.3f})" if ratios else " " * 8))
        last = [curves[spec, seed][max(curves[spec, seed])] for seed in seeds]
        per_step = sum(float(r["seconds"]) / int(r["step"]) for r in last) / len(last)
        print(f"{spec:28s}" + "".join(cells) + f"{per_step:>9.3f}")
    if partial:
        print("(* : not every seed reached that step)")
    with open(Path(args.out) / "summary.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["variant", "seed", "step", "train_loss", "valid_loss",
                         f"ratio_to_{base}", "seconds"])
        writer.writerows(rows)
    summarise_breakdowns(args)


def summarise_breakdowns(args):
    """Print the final validation loss by kind of token (``--breakdown`` runs), each
    variant's mean over seeds and its ratio to the first variant's, and write
    <out>/breakdown_summary.csv."""
    found = {}  # (variant, seed) -> {split: (tokens, loss)}
    for spec in args.variants:
        for seed in args.seeds:
            path = breakdown_path(args.out, spec, seed)
            if path.exists():
                with open(path) as f:
                    found[spec, seed] = {r["split"]: (int(r["tokens"]), float(r["valid_loss"]))
                                         for r in csv.DictReader(f)}
    if not found:
        return
    base = args.variants[0]
    shares = next(iter(found.values()))  # {split: (tokens, loss)}: the same tokens in every run
    splits, total = list(shares), shares["all"][0]
    print(f"\nfinal validation loss by kind of token; (ratio to {base} of the same seed, "
          "mean over the seeds both have)")
    print(f"{'variant':28s}" + "".join(f"{name:>22s}" for name in splits))
    print(f"{'(share of tokens)':28s}" + "".join(f"{shares[n][0] / total:>22.3f}" for n in splits))
    rows = []
    for spec in args.variants:
        seeds = [seed for seed in args.seeds if (spec, seed) in found]
        if not seeds:
            continue
        cells = []
        for name in splits:
            values = [found[spec, seed][name][1] for seed in seeds]
            ratios = [found[spec, seed][name][1] / found[base, seed][name][1]
                      for seed in seeds if (base, seed) in found]
            mean = sum(values) / len(values)
            ratio = f"({sum(ratios) / len(ratios):.3f})" if ratios else ""
            cells.append(f"{mean:>13.4f} {ratio:>8s}")
            rows += [[spec, seed, name, found[spec, seed][name][0], found[spec, seed][name][1]]
                     for seed in seeds]
        print(f"{spec:28s}" + "".join(cells))
    with open(Path(args.out) / "breakdown_summary.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["variant", "seed", "split", "tokens", "valid_loss"])
        writer.writerows(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lists_dir", default="/var/lib/apt/lists",
                        help="folder holding Debian's *_i18n_Translation-en* index")
    parser.add_argument("--out", required=True)
    parser.add_argument("--variants", nargs="+", default=["mha", "mla", "mtla_s2"])
    parser.add_argument("--tokens", choices=["bytes", "bpe"], default="bytes",
                        help="model bytes, or sentencepiece BPE units (--vocab of them)")
    parser.add_argument("--vocab", type=int, default=2000, help="--tokens bpe: units")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--eval_every", type=int, default=500)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--d_model", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--valid_windows", type=int, default=128)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1],
                        help="train each variant once per seed (weights and batches)")
    parser.add_argument("--jobs", type=int, default=1, help="variants trained at once")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--breakdown", action="store_true",
                        help="after training, split the validation loss by copyable tokens "
                             "(their 4-token context and they occurred earlier in the "
                             "window) and by the query's offset in a chunk of two")
    parser.add_argument("--summarise_only", action="store_true",
                        help="print the table of the curves already in --out")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a worker: train this variant
    parser.add_argument("--one_seed", type=int, help=argparse.SUPPRESS)  # ... with this seed
    args = parser.parse_args(argv)
    for spec in args.variants:
        parse_variant(spec)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if len(set(args.seeds)) != len(args.seeds):
        raise SystemExit(f"--seeds: each seed once, got {args.seeds}")
    if args.one:
        return train_one(args.one, args.one_seed, args)
    if args.summarise_only:
        return summarise(args)
    if args.tokens == "bpe":
        prepare_bpe(args)  # once, before the workers read it
    (Path(args.out) / "device.txt").write_text(device_words(args.device) + "\n")
    worker = [sys.executable, __file__] + (argv if argv is not None else sys.argv[1:])
    pending = [(spec, seed) for seed in args.seeds for spec in args.variants]
    running, failed = [], []
    while pending or running:
        while pending and len(running) < args.jobs:
            spec, seed = pending.pop(0)
            log_path = curve_path(args.out, spec, seed).with_suffix(".log")
            log_path.parent.mkdir(parents=True, exist_ok=True)
            proc = subprocess.Popen(worker + ["--one", spec, "--one_seed", str(seed)],
                                    stdout=open(log_path, "w"), stderr=subprocess.STDOUT,
                                    env=os.environ)
            running.append((spec, seed, log_path, proc))
        time.sleep(2)
        for job in list(running):
            spec, seed, log_path, proc = job
            if proc.poll() is not None:
                running.remove(job)
                if proc.returncode:
                    failed.append((spec, seed))
                    print(f"{spec} (seed {seed}): failed (exit {proc.returncode}), see {log_path}")
    summarise(args)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
