"""Kaldi data dirs train/dev/test with noise audio of mini_en's real utterance lengths
(session 17: mini_en's 268 MB of audio do not fit the carry; throughput depends on the
lengths only). Usage: synth_audio.py <lengths dir> <out data dir>"""
import os, sys
import numpy as np, soundfile as sf
src, out = sys.argv[1], os.path.abspath(sys.argv[2])
rng = np.random.default_rng(0)
for part in ["train", "dev", "test"]:
    os.makedirs(f"{out}/{part}", exist_ok=True); os.makedirs(f"{out}/audio/{part}", exist_ok=True)
    with open(f"{src}/{part}/num_samples") as f, open(f"{out}/{part}/wav.scp", "w") as g:
        for line in f:
            key, n = line.split()
            path = f"{out}/audio/{part}/{key}.wav"
            sf.write(path, (rng.standard_normal(int(n)) * 0.05).astype(np.float32), 16000, subtype="PCM_16")
            g.write(f"{key} {path}\n")
    for name in ["text", "utt2spk", "spk2utt"]:
        os.system(f"cp {src}/{part}/{name} {out}/{part}/")
