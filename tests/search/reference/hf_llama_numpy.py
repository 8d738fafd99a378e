"""Independent float64 forward of a Hugging Face llama folder, for checking
that an elastic checkpoint is a plain llama model as Hugging Face reads it.

It shares no code with the library: the config is read by
transformers.AutoConfig (so the folder must load as a LlamaConfig), the
weights by safetensors' numpy loader (no torch), and the forward is numpy in
float64 with Hugging Face's conventions:

  x = embed_tokens[tokens]
  per layer:  h = RMSNorm(x) * input_layernorm
              q, k, v = h Wq^T, h Wk^T, h Wv^T                (heads x head_dim)
              RoPE, rotate-half: q' = q cos + rotate_half(q) sin with
                rotate_half(x) = (-x[d/2:], x[:d/2]) and angle
                pos * theta^(-2i/d) for dimensions i and i + d/2
              causal softmax(q k^T / sqrt(head_dim)) v, query head h reading
                KV head h // (heads / kv_heads)
              x += attn Wo^T
              h = RMSNorm(x) * post_attention_layernorm
              x += (silu(h Wgate^T) * (h Wup^T)) Wdown^T
  logits = (RMSNorm(x) * norm) W^T,  W = lm_head, or embed_tokens when
           tie_word_embeddings

Usage:
  hf_llama_numpy.py FOLDER --tokens 1,2,3 --out logits.bin
      writes raw little-endian float32 logits [tokens x vocab], every position
"""
import argparse
import os
import sys

import numpy as np
from safetensors.numpy import load_file
from transformers import AutoConfig


def rms_norm(x, weight, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def rotate_half(x):
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def forward(folder, tokens):
    config = AutoConfig.from_pretrained(folder)
    if config.model_type != "llama":
        sys.exit(f"expected a llama config, found {config.model_type}")
    # transformers 4 keeps rope_theta and rope_scaling apart; 5 gathers both
    # in rope_parameters (rope_scaling its alias).
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        sys.exit("RoPE scaling is not implemented in this reference")
    weights = {name: value.astype(np.float64) for name, value in load_file(os.path.join(folder, "model.safetensors")).items()}
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    eps = config.rms_norm_eps
    theta = rope.get("rope_theta", getattr(config, "rope_theta", None))
    n = len(tokens)
    x = weights["model.embed_tokens.weight"][tokens]
    inverse = theta ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    angles = np.outer(np.arange(n, dtype=np.float64), inverse)
    cos = np.cos(np.concatenate([angles, angles], axis=-1))[:, None, :]
    sin = np.sin(np.concatenate([angles, angles], axis=-1))[:, None, :]
    mask = np.triu(np.full((n, n), -np.inf), k=1)
    for i in range(config.num_hidden_layers):
        w = lambda name: weights[f"model.layers.{i}.{name}.weight"]
        h = rms_norm(x, w("input_layernorm"), eps)
        q = (h @ w("self_attn.q_proj").T).reshape(n, heads, head_dim)
        k = (h @ w("self_attn.k_proj").T).reshape(n, kv_heads, head_dim)
        v = (h @ w("self_attn.v_proj").T).reshape(n, kv_heads, head_dim)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        group = heads // kv_heads
        out = np.empty((n, heads, head_dim))
        for head in range(heads):
            scores = q[:, head, :] @ k[:, head // group, :].T / np.sqrt(head_dim) + mask
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            out[:, head, :] = (scores / scores.sum(axis=-1, keepdims=True)) @ v[:, head // group, :]
        x = x + out.reshape(n, heads * head_dim) @ w("self_attn.o_proj").T
        h = rms_norm(x, w("post_attention_layernorm"), eps)
        gate = h @ w("mlp.gate_proj").T
        x = x + (gate / (1.0 + np.exp(-gate)) * (h @ w("mlp.up_proj").T)) @ w("mlp.down_proj").T
    head = weights["model.embed_tokens.weight"] if config.tie_word_embeddings else weights["lm_head.weight"]
    return rms_norm(x, weights["model.norm.weight"], eps) @ head.T


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder")
    parser.add_argument("--tokens", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    tokens = [int(t) for t in args.tokens.split(",")]
    forward(args.folder, tokens).astype("<f4").tofile(args.out)


if __name__ == "__main__":
    main()
