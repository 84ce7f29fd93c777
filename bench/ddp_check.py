#!/usr/bin/env python3
"""Data-parallel training of the paper-sized MTLA model on N processes (torchrun).

    python -m torch.distributed.run --nproc_per_node 2 bench/ddp_check.py \
        --steps 6 --save_at 3 --save ckpt_2gpu.pt --speed_steps 13 --out ddp_2gpu.json

The model is the benchmark's (12-layer encoder over 300 frames, 9-layer MTLA s=2
decoder, d_model 512, 8 heads, FFN 2048, vocabulary 10000), trained with DDP (NCCL on
CUDA, gloo on the CPU) from random data that depends only on the step index, so runs
on any number of processes see the same global batches:

- ``--steps``: fp32 (TF32 off) steps at ``--global_batch``; every step's global mean
  loss is written, to compare 1 and N processes at the same global batch.
  ``--save_at K --save F`` writes model + optimizer after step K; ``--resume F``
  continues from such a file (written by a run on any number of processes) at K + 1.
- ``--speed_steps``: then bf16-autocast steps at ``--batch_per_process``; utterances
  per second over those after ``--warmup`` (weak-scaling throughput).

This checks the distributed training of the model itself; the recipes train through
espnet's trainer (``espnet2_mtla.bin.train --ngpu N``), which wraps the model in the
same DDP.
"""

import argparse
import json
import os
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from espnet2_mtla.benchmark.subjects import BenchModel
from espnet2_mtla.benchmark.variants import PAPER_SIZES, TINY_SIZES, VARIANTS, at_size


def global_batch(step, size, frames, tokens, vocab):
    """The global batch of ``step``: the same on any number of processes."""
    generator = torch.Generator().manual_seed(1000 + step)
    speech = torch.randn(size, frames, 80, generator=generator)
    text = torch.randint(0, vocab - 1, (size, tokens), generator=generator)
    return speech, text


class TeacherForcedLoss(torch.nn.Module):
    """forward(speech, text) -> mean cross entropy of text after the speech prefix
    (DDP synchronises gradients of what runs inside its wrapped module's forward)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, speech, text):
        model = self.model
        lengths = torch.full((len(speech),), speech.shape[1], device=speech.device)
        encoded = model.encode_prefix({"speech": speech, "speech_lengths": lengths})
        bos = torch.full((len(text), 1), model.task_token_id, device=text.device)
        text_in = torch.cat([bos, text[:, :-1]], dim=1)
        text_lengths = torch.full((len(text),), text.shape[1], device=text.device)
        logits = model.text_logits(encoded, text_in, text_lengths)
        return F.cross_entropy(logits.float().flatten(0, 1), text.flatten())


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="mtla_s2", choices=list(VARIANTS))
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (CPU check)")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--global_batch", type=int, default=16)
    parser.add_argument("--speed_steps", type=int, default=0)
    parser.add_argument("--batch_per_process", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--tokens", type=int, default=50)
    parser.add_argument("--save_at", type=int, default=-1)
    parser.add_argument("--save")
    parser.add_argument("--resume")
    parser.add_argument("--out", required=True, help="JSON file written by rank 0")
    args = parser.parse_args()

    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")  # env:// (torchrun)
    rank, world = dist.get_rank(), dist.get_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    size = TINY_SIZES if args.tiny else PAPER_SIZES
    vocab = size["vocab"]
    attention, conf = at_size(VARIANTS, args.tiny)[args.variant]
    torch.manual_seed(0)  # the same initial weights on every process
    model = BenchModel(attention, conf, size, vocab).to(device).train()
    ddp = DistributedDataParallel(TeacherForcedLoss(model),
                                  device_ids=[local_rank] if cuda else None)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    start = 0
    if args.resume:
        state = torch.load(args.resume, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = state["step"] + 1

    record = dict(variant=args.variant, world_size=world,
                  device=torch.cuda.get_device_name(device) if cuda else "cpu",
                  resumed_from=args.resume, losses={})
    for step in range(start, args.steps):  # the same global batches on any world size
        speech, text = global_batch(step, args.global_batch, args.frames, args.tokens, vocab)
        share = args.global_batch // world
        mine = slice(rank * share, (rank + 1) * share)
        speech, text = speech[mine], text[mine]
        loss = ddp(speech.to(device), text.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # DDP averages the gradients over the processes
        optimizer.step()
        mean_loss = loss.detach().clone()
        dist.all_reduce(mean_loss)  # equal shares: the mean of means is the global mean
        record["losses"][step] = mean_loss.item() / world
        if step == args.save_at and args.save and rank == 0:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "step": step}, args.save)
        dist.barrier()

    timed, utterances = 0.0, 0
    for step in range(args.speed_steps):  # each process its own batches
        speech, text = global_batch(10_000 + step * world + rank, args.batch_per_process,
                                    args.frames, args.tokens, vocab)
        speech, text = speech.to(device), text.to(device)
        if cuda:
            torch.cuda.synchronize()
        begin = time.perf_counter()
        with torch.autocast(device.type, torch.bfloat16):
            loss = ddp(speech, text)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if cuda:
            torch.cuda.synchronize()
        if step >= args.warmup:
            timed += time.perf_counter() - begin
            utterances += len(speech) * world
    if utterances:
        record.update(utterances_per_second=utterances / timed,
                      batch_per_process=args.batch_per_process,
                      timed_steps=args.speed_steps - args.warmup)
    if cuda:
        record["peak_memory_MB"] = torch.cuda.max_memory_allocated(device) / 1e6
    if rank == 0:
        print(json.dumps(record), flush=True)
        with open(args.out, "w") as stream:
            json.dump(record, stream, indent=1)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
