"""Independent float64 reference of the Llama decoder, read from a GGUF file.

The C++ decoder's logits are checked against this script, so it shares no
code with the library: it reads the file with the PyPI `gguf` package
(GGUFReader, and gguf.quants.dequantize once per weight, widened to float64)
and runs its own numpy forward pass over a whole token sequence (teacher
forcing):

  x = token_embd[tokens]
  per layer:  h = RMSNorm(x) * attn_norm
              q, k, v = h Wq^T, h Wk^T, h Wv^T            (heads x head_dim)
              RoPE on q and k, llama.cpp's "normal" mode: adjacent pairs
                (x[2i], x[2i+1]) rotate by pos * base^(-2i/n_rot) (divided by
                rope_freqs[i] when the file has that tensor), which is the Q/K
                row order GGUF llama files are written in
              causal softmax(q k^T / sqrt(head_dim)) v, query head h reading
                KV head h // (heads / kv_heads) (GQA)
              x += attn Wo^T
              h = RMSNorm(x) * ffn_norm
              x += (silu(h Wgate^T) * (h Wup^T)) Wdown^T
  logits = (RMSNorm(x) * output_norm) W^T,  W = output.weight, or
           token_embd.weight when the embeddings are tied

Hyperparameters come from the GGUF metadata ({arch}.block_count,
embedding_length, attention.head_count(_kv), attention.key_length,
rope.dimension_count, rope.freq_base, attention.layer_norm_rms_epsilon).
gguf's arrays come out row-major [rows, cols] (the reverse of GGUF's
innermost-first dimensions); the embedding is checked to be [vocab, hidden].

Usage:
  llama_numpy.py MODEL.gguf --tokens 1,2,3 --out logits.bin
      writes raw little-endian float32 logits [tokens x vocab], every position
  llama_numpy.py MODEL.gguf --text "The capital of France is" --generate 8
      prints the greedy continuation (text needs a byte-level BPE tokenizer,
      built from the GGUF as tests/io/reference/tokenizer_reference.py does)
  llama_numpy.py MODEL.gguf --text-file perplexity_text.txt --perplexity
      prints exp(-mean log p(token t+1 | tokens <= t)) over the sequence
--bos puts the file's bos token in front of the sequence.

Validated on SmolLM2-135M-Instruct Q4_1 (the default model): the greedy
continuation of "The capital of France is" is " Paris.\n\nThe answer is: 2";
the perplexity of perplexity_text.txt (606 tokens, no bos) is 22.7, against
177 with rotate-half RoPE and 221 with none on its first 256 tokens (26.5
when right); 64 tokens of logits take under 10 s on a busy 2-core machine
(about 4 s of it dequantising the weights).
"""
import argparse
import math
import pathlib
import sys
import time

import gguf
import numpy as np


def scalar_field(reader, name, default=None):
    entry = reader.fields.get(name)
    if entry is None:
        return default
    if entry.types[0] == gguf.GGUFValueType.STRING:
        return bytes(entry.parts[entry.data[0]]).decode("utf-8")
    return entry.parts[entry.data[0]].tolist()[0]


def rms_norm(x, weight, epsilon):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + epsilon) * weight


def silu(x):
    return x / (1.0 + np.exp(-x))


def softmax_rows(scores):
    scores = scores - scores.max(axis=-1, keepdims=True)
    weights = np.exp(scores)
    return weights / weights.sum(axis=-1, keepdims=True)


class LlamaGGUF:
    def __init__(self, path):
        self.reader = gguf.GGUFReader(path)
        arch = scalar_field(self.reader, "general.architecture")
        if arch != "llama":
            raise SystemExit(f"{path}: expected general.architecture 'llama', found {arch!r}")
        scaling = scalar_field(self.reader, f"{arch}.rope.scaling.type", "none")
        if scaling != "none":
            raise SystemExit(f"{path}: rope scaling {scaling!r} is not implemented here")

        def key(name, default=None):
            value = scalar_field(self.reader, f"{arch}.{name}", default)
            if value is None:
                raise SystemExit(f"{path}: metadata key {arch}.{name} is missing")
            return value

        self.layers = key("block_count")
        self.hidden = key("embedding_length")
        self.heads = key("attention.head_count")
        self.kv_heads = key("attention.head_count_kv", self.heads)
        self.head_dim = key("attention.key_length", self.hidden // self.heads)
        self.rotary_dims = key("rope.dimension_count", self.head_dim)
        self.rope_base = key("rope.freq_base", 10000.0)
        self.epsilon = key("attention.layer_norm_rms_epsilon")
        if self.heads % self.kv_heads:
            raise SystemExit(f"{path}: {self.heads} query heads do not split into {self.kv_heads} KV groups")

        self.tensors = {tensor.name: tensor for tensor in self.reader.tensors}
        self.embedding = self.weight("token_embd.weight")
        self.vocab = self.embedding.shape[0]
        if self.embedding.shape != (self.vocab, self.hidden):
            raise SystemExit(f"token_embd.weight: expected [vocab x {self.hidden}], found {self.embedding.shape}")
        self.lm_head = self.weight("output.weight") if "output.weight" in self.tensors else self.embedding
        self.output_norm = self.weight("output_norm.weight")
        self.rope_freqs = self.weight("rope_freqs.weight") if "rope_freqs.weight" in self.tensors else None
        names = ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"]
        self.blocks = [{name: self.weight(f"blk.{i}.{name}.weight") for name in names} for i in range(self.layers)]

    def weight(self, name):
        tensor = self.tensors[name]
        values = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        shape = tuple(int(size) for size in reversed(tensor.shape))
        return np.asarray(values, dtype=np.float64).reshape(shape)

    def rope(self, x):
        """Rotates adjacent pairs of the first rotary_dims of x [tokens, heads, head_dim]."""
        pairs = self.rotary_dims // 2
        inverse_frequency = self.rope_base ** (-2.0 * np.arange(pairs) / self.rotary_dims)
        if self.rope_freqs is not None:
            inverse_frequency = inverse_frequency / self.rope_freqs[:pairs]
        angles = np.arange(x.shape[0])[:, None] * inverse_frequency[None, :]
        cos, sin = np.cos(angles)[:, None, :], np.sin(angles)[:, None, :]
        even, odd = x[..., 0:self.rotary_dims:2], x[..., 1:self.rotary_dims:2]
        rotated = x.copy()
        rotated[..., 0:self.rotary_dims:2] = even * cos - odd * sin
        rotated[..., 1:self.rotary_dims:2] = even * sin + odd * cos
        return rotated

    def attention(self, block, h):
        count = h.shape[0]
        q = self.rope((h @ block["attn_q"].T).reshape(count, self.heads, self.head_dim))
        k = self.rope((h @ block["attn_k"].T).reshape(count, self.kv_heads, self.head_dim))
        v = (h @ block["attn_v"].T).reshape(count, self.kv_heads, self.head_dim)
        future = np.triu(np.ones((count, count), dtype=bool), k=1)
        group = self.heads // self.kv_heads
        out = np.empty((count, self.heads, self.head_dim))
        for head in range(self.heads):
            scores = q[:, head] @ k[:, head // group].T / math.sqrt(self.head_dim)
            scores[future] = -np.inf
            out[:, head] = softmax_rows(scores) @ v[:, head // group]
        return out.reshape(count, self.heads * self.head_dim) @ block["attn_output"].T

    def logits(self, tokens):
        """Logits [len(tokens) x vocab] for every position of the sequence."""
        x = self.embedding[np.asarray(tokens)]
        for block in self.blocks:
            x = x + self.attention(block, rms_norm(x, block["attn_norm"], self.epsilon))
            h = rms_norm(x, block["ffn_norm"], self.epsilon)
            x = x + (silu(h @ block["ffn_gate"].T) * (h @ block["ffn_up"].T)) @ block["ffn_down"].T
        return rms_norm(x, self.output_norm, self.epsilon) @ self.lm_head.T

    def tokenizer(self):
        sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "io" / "reference"))
        from tokenizer_reference import build_tokenizer, field

        spec = {name: field(self.reader, f"tokenizer.ggml.{name}") for name in ("tokens", "token_type", "merges")}
        return build_tokenizer(spec)


def log_softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--tokens", help="comma-separated token ids")
    source.add_argument("--text")
    source.add_argument("--text-file", type=pathlib.Path)
    parser.add_argument("--bos", action="store_true", help="put the bos token in front")
    parser.add_argument("--out", type=pathlib.Path, help="write float32 little-endian logits [tokens x vocab]")
    parser.add_argument("--generate", type=int, default=0, help="greedy continuation of this many tokens")
    parser.add_argument("--perplexity", action="store_true")
    args = parser.parse_args()

    start = time.perf_counter()
    model = LlamaGGUF(args.model)
    loaded = time.perf_counter()
    tokenizer = None
    if args.tokens is not None:
        tokens = [int(token) for token in args.tokens.split(",") if token.strip()]
    else:
        tokenizer = model.tokenizer()
        text = args.text if args.text is not None else args.text_file.read_text(encoding="utf-8")
        tokens = tokenizer.encode(text, add_special_tokens=False).ids
    if args.bos:
        tokens = [scalar_field(model.reader, "tokenizer.ggml.bos_token_id")] + tokens
    if not tokens or min(tokens) < 0 or max(tokens) >= model.vocab:
        raise SystemExit(f"expected 1 or more token ids in [0, {model.vocab}), found {tokens}")

    logits = model.logits(tokens)
    computed = time.perf_counter()
    print(f"{len(tokens)} tokens: load {loaded - start:.2f} s, forward {computed - loaded:.2f} s", file=sys.stderr)
    if args.out is not None:
        logits.astype("<f4").tofile(args.out)
    if args.perplexity:
        if len(tokens) < 2:
            raise SystemExit("perplexity needs at least 2 tokens")
        predicted = log_softmax(logits[:-1])[np.arange(len(tokens) - 1), tokens[1:]]
        print(f"perplexity {math.exp(-predicted.mean()):.4f} over {len(tokens) - 1} predicted tokens")
    if args.generate > 0:
        sequence = list(tokens)
        for _ in range(args.generate):
            sequence.append(int(np.argmax(model.logits(sequence)[-1])))
        continuation = sequence[len(tokens):]
        print("greedy ids", ",".join(str(token) for token in continuation))
        if tokenizer is not None:
            print("greedy text", repr(tokenizer.decode(continuation)))


if __name__ == "__main__":
    main()
