"""``normalize: global_mvn`` that also reads fairseq's ``gcmvn.npz`` (``mean``, ``std``),
besides ESPnet's own statistics files (count, sum, sum_square): the same normalisation,
(x - mean) / std on every frame, from either file. A missing file is named."""

from pathlib import Path
from typing import Union

import numpy as np
import torch
from espnet2.layers.global_mvn import GlobalMVN


class GlobalCMVN(GlobalMVN):
    def __init__(self, stats_file: Union[Path, str], norm_means: bool = True,
                 norm_vars: bool = True, eps: float = 1.0e-20):
        if not Path(stats_file).is_file():
            raise FileNotFoundError(f"normalize_conf.stats_file {stats_file} does not exist "
                                    "(gcmvn.npz of the training set, or espnet's feats_stats.npz)")
        stats = np.load(stats_file)
        if isinstance(stats, np.lib.npyio.NpzFile) and {"mean", "std"} <= set(stats.files):
            torch.nn.Module.__init__(self)
            self.norm_means, self.norm_vars, self.eps = norm_means, norm_vars, eps
            self.stats_file = Path(stats_file)
            self.register_buffer("mean", torch.from_numpy(stats["mean"].astype(np.float32)))
            self.register_buffer("std", torch.from_numpy(
                np.maximum(stats["std"], np.sqrt(eps)).astype(np.float32)))
        else:
            super().__init__(stats_file, norm_means, norm_vars, eps)
