"""espnet2-mtla: decoder-only speech and language models with MTLA on ESPnet2.

Top-level dependencies are declared here; ``tools/requirements.lock`` pins the whole
environment that ``make test`` builds (``tools/setup_env.sh``).
"""

from setuptools import find_packages, setup

# The attention modules, kernels and Transformers classes need only torch (and numpy);
# any torch from 2.8 on that the kernels support. Ranges here; tools/requirements.lock is
# the exact environment `make test` builds.
install_requires = [
    "torch>=2.8",
    "numpy>=1.24",
]

extras_require = {
    # the Transformers classes (espnet2_mtla.hf): the range espnet2_mtla.hf.versions
    # accepts (tested: 5.23.0 and 5.24.0)
    "hf": ["transformers>=5.23.0,<5.25"],
    # training, decoding and the recipes: torch, torchaudio, espnet and s3prl only install
    # and import together at these versions on Python 3.11 (torchaudio >= 2.9 breaks
    # s3prl; espnet 202511 is the newest release for Python 3.11)
    "espnet": [
        "torch==2.8.0",
        "torchaudio==2.8.0",
        "espnet==202511",
        "s3prl==0.4.18",
        "kaldiio>=2.18",
        "soundfile>=0.12",
        "sentencepiece>=0.2",
        "pyyaml>=6.0",
        "jiwer>=3.0",
        "sacrebleu>=2.4",
        "rouge-score>=0.1.2",
        # espnet's trainer writes tensorboard logs and matplotlib plots under exp/
        "tensorboard>=2.15",
        "matplotlib>=3.8",
    ],
    "triton": ["triton>=3.4.0"],  # the GPU kernels (torch 2.8.0 is built against 3.4.0)
    # the reference package is a numerical oracle in the tests only
    # nbclient + ipykernel execute the notebook demo in the tests; parameterized is what
    # Transformers' common model tests (tools/fetch_transformers_tests.sh) import
    "test": ["pytest>=8", "hypothesis>=6.100", "mtla==0.3.2", "nbclient==0.10.2",
             "nbformat==5.11.1", "ipykernel==7.4.0", "parameterized==0.9.0"],
}

setup(
    name="espnet2_mtla",
    version="0.1.0",
    description="Decoder-only speech and language models with Multi-head Temporal "
    "Latent Attention (MTLA) and MHA/MQA/GQA/MLA, built on ESPnet2",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=find_packages(include=["espnet2_mtla", "espnet2_mtla.*"]),
    python_requires=">=3.10",  # the [espnet] extra: Python 3.11 (espnet 202511)
    install_requires=install_requires,
    extras_require=extras_require,
)
