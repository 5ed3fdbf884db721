"""Default model catalog, grounded in ``shared/calibration.md``.

Sources per column:

* Prototype rows (codebert-base ... t5-3B): the seed author's measurement repository
  (justinsj/concurrent_inference, branch lambdalabs), derived medians: size, deserialisation time
  from host RAM (-> ``deserialize_gb_per_s = size / time``), GPU and CPU forward time at batch 1.
  Those GPU times were taken without a device synchronise, so they are lower bounds.
* Sizes of ResNet-50, ViT-B/16, ViT-L/16 (torchvision docs), BERT-base/large (Hugging Face model
  cards) and Llama-2-7B fp16 (Hugging Face shards).
* ResNet-50 batch-1 GPU latency 10.4 ms on V100 (NVIDIA DeepLearningExamples).

Assumptions (no row in calibration.md; flagged so users can replace them):

* Models without a prototype measurement deserialise at 0.7 GB/s, the prototype's typical rate.
* GPU/CPU times of BERT, ViT and Llama-2-7B: scaled from the nearest prototype model of similar
  architecture and size (noted per row). Llama-2-7B's time is per request of a short generation.
* ``gpu_per_item_ms`` = 10% of the batch-1 time: batching amortises most of a forward pass.
* ``max_batch`` = 8 (32 for the small vision/encoder models, 4 for multi-GB generators).
* ``slo_s``: 1 s for encoders and vision models, 5 s for the multi-GB generators: comfortably
  above warm service, far below any cold start, so cold starts are what violates the SLO.
"""

from __future__ import annotations

from .config import ModelSpec


def _m(name, size_gb, deser_s, gpu_ms, cpu_ms, max_batch, slo_s) -> ModelSpec:
    return ModelSpec(
        name=name,
        size_gb=size_gb,
        gpu_batch1_ms=gpu_ms,
        gpu_per_item_ms=round(0.1 * gpu_ms, 4),
        cpu_ms=cpu_ms,
        max_batch=max_batch,
        slo_s=slo_s,
        deserialize_gb_per_s=round(size_gb / deser_s, 4),
    )


# name: (size GB, deserialise s, GPU ms, CPU ms, max batch, SLO s)
CATALOG: dict[str, ModelSpec] = {
    # Seed author's prototype (calibration.md, prototype table).
    "codebert-base": _m("codebert-base", 0.50, 0.50, 13.1, 270, 8, 1.0),
    "albert-xxlarge-v2": _m("albert-xxlarge-v2", 0.89, 1.37, 1.8, 442, 8, 1.0),
    "bart-large": _m("bart-large", 2.04, 2.74, 32.3, 102, 8, 1.0),
    "dialogpt-large": _m("dialogpt-large", 3.13, 3.89, 41.4, 878, 4, 5.0),
    "gpt2-xl": _m("gpt2-xl", 6.28, 9.02, 58.2, 2360, 4, 5.0),
    "t5-3b": _m("t5-3b", 11.67, 15.72, 53.2, 3905, 4, 5.0),
    # Sizes from torchvision / Hugging Face; ResNet-50 GPU time from NVIDIA DeepLearningExamples.
    # CPU ms (assumption): codebert's CPU/GPU ratio (~20x) applied.
    "resnet50": _m("resnet50", 0.0978, 0.0978 / 0.7, 10.4, 208, 32, 1.0),
    # BERT-base: same architecture as codebert-base (assumption: its times).
    "bert-base": _m("bert-base", 0.44, 0.44 / 0.7, 13.1, 270, 32, 1.0),
    # BERT-large (assumption): ~3x BERT-base compute.
    "bert-large": _m("bert-large", 1.34, 1.34 / 0.7, 39.3, 810, 8, 1.0),
    # ViT-B/16 (assumption): ~ResNet-50 class compute at 4x FLOPs -> 2x time on GPU.
    "vit-b16": _m("vit-b16", 0.33, 0.33 / 0.7, 20.8, 416, 32, 1.0),
    "vit-l16": _m("vit-l16", 1.16, 1.16 / 0.7, 62.4, 1250, 8, 1.0),
    # Llama-2-7B fp16 13.48 GB (HF shards). Assumption: t5-3b's time x 2 per short request.
    "llama-2-7b": _m("llama-2-7b", 13.48, 13.48 / 0.7, 106.4, 7810, 4, 5.0),
}

PROTOTYPE_MODELS = (
    "codebert-base",
    "albert-xxlarge-v2",
    "bart-large",
    "dialogpt-large",
    "gpt2-xl",
    "t5-3b",
)


def get_models(names) -> tuple[ModelSpec, ...]:
    """Catalog entries by name; an unknown name lists the valid ones and the closest."""
    import difflib

    out = []
    for n in names:
        if n not in CATALOG:
            close = difflib.get_close_matches(str(n), CATALOG, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown model {n!r}; valid models: {sorted(CATALOG)}.{hint}")
        out.append(CATALOG[n])
    return tuple(out)
