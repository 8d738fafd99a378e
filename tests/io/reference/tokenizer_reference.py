"""Reference for the byte-level BPE tokenizer on the default model's vocabulary.

Usage: tokenizer_reference.py GGUF OUTDIR

Builds SmolLM2's HF tokenizer from the GGUF's tokenizer.ggml.* fields with the
`tokenizers` library, configured as SmolLM2's own tokenizer.json is (BPE,
pre-tokenizer Digits(individual_digits) then ByteLevel without a prefix
space, ByteLevel decoder, the control tokens as special added tokens), and
writes into OUTDIR:
  tokenizer.json, tokenizer_config.json  the HF files (chat template, bos/eos)
  gguf_spec.json                        the GGUF fields as they are stored
Prints {"cases": [{"text": ..., "ids": [...]}, ...]}: the ids HF tokenizers
gives for a few hundred test strings (no bos/eos added, added tokens matched).
"""
import json
import pathlib
import random
import sys

import gguf
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers


def field(reader, name):
    entry = reader.fields.get(name)
    if entry is None:
        return None
    if entry.types[0] == gguf.GGUFValueType.ARRAY:
        if entry.types[1] == gguf.GGUFValueType.STRING:
            return [bytes(entry.parts[i]).decode("utf-8") for i in entry.data]
        return [entry.parts[i].tolist()[0] for i in entry.data]
    if entry.types[0] == gguf.GGUFValueType.STRING:
        return bytes(entry.parts[entry.data[0]]).decode("utf-8")
    return entry.parts[entry.data[0]].tolist()[0]


def build_tokenizer(spec):
    vocab = {token: index for index, token in enumerate(spec["tokens"])}
    merges = [tuple(merge.split(" ", 1)) for merge in spec["merges"]]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    tokenizer.decoder = decoders.ByteLevel()
    control = [AddedToken(token, special=True, normalized=False)
               for token, kind in zip(spec["tokens"], spec["token_type"]) if kind == 3]
    tokenizer.add_special_tokens(control)
    return tokenizer


def test_strings():
    fixed = [
        "", " ", "  ", "Hello world", "Hello, world!", " leading space", "trailing space ", "double  space",
        "tabs\tand\ttabs", "new\nline", "two\n\nlines", "\r\n windows", "   \n  \t mixed  \n",
        "I'm", "you're", "it's", "they've", "we'll", "I'd", "don't", "DON'T", "She'S", "'s alone", "rock 'n' roll",
        "1", "12", "123", "1234", "12345678901234567890", "3.14159", "1,000,000", "v2.0.1", "x=42;", "2024-06-01",
        "٣٤٥ Arabic-Indic digits", "½ ¾ ² ³ vulgar", "Ⅻ roman",
        "こんにちは世界", "你好，世界！", "안녕하세요", "Привет, мир!", "Γειά σου Κόσμε", "مرحبا بالعالم", "שלום עולם",
        "नमस्ते दुनिया", "ไทย", "café naïve résumé", "Zürich Straße", "e\u0301 combining", "ﬁ ligature",
        "😀", "👍🏽", "👨‍👩‍👧‍👦 family", "🇫🇷 flag", "emoji 🎉🎉 party", "❤️", "\u200b zero width",
        "def f(x):\n    return x * 2\n", "int main() { return 0; }", "for (int i = 0; i < n; ++i) {}",
        "<div class=\"a\">text</div>", "SELECT * FROM t WHERE x > 1;", "a->b && c || !d", "#include <vector>",
        "https://example.com/path?q=1&r=2", "user@example.com", "$100 & 50% off!!!", "...", "---", "***bold***",
        "<|im_start|>user\nHi<|im_end|>\n", "<|im_start|>assistant\n", "<|endoftext|>", "a<|im_end|>b",
        "<|im_start|><|im_end|>", "<|im_start", "im_start|>", "<repo_name>x<file_sep>y", "<|IM_START|>",
        "\u00a0nbsp", "\u3000ideographic space", "end with newline\n", "\n", "\t", "\x0b\x0c",
        "Ġ literal", "ĊĠ", "The quick brown fox jumps over the lazy dog.",
    ]
    rng = random.Random(1234)
    alphabet = ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789     \t\n.,;:!?'\"()[]{}<>-_+=*/\\|@#$%^&~`"
                "éüßñçøåæœ中文字日本語한국어ДЖЯαβγ😀🎉👍€£¥°±×÷")
    generated = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))) for _ in range(260)]
    words = ["the", " the", "The", "tokenizer", " merges", "'s", "123", "4567", " ", "  ", "\n", "\t", "🙂", "東京", "x"]
    generated += ["".join(rng.choice(words) for _ in range(rng.randint(2, 12))) for _ in range(80)]
    return fixed + generated


def main():
    gguf_path, out_dir = sys.argv[1], pathlib.Path(sys.argv[2])
    reader = gguf.GGUFReader(gguf_path)
    spec = {
        "model": field(reader, "tokenizer.ggml.model"),
        "pre": field(reader, "tokenizer.ggml.pre"),
        "tokens": field(reader, "tokenizer.ggml.tokens"),
        "token_type": field(reader, "tokenizer.ggml.token_type"),
        "merges": field(reader, "tokenizer.ggml.merges"),
        "bos_token_id": field(reader, "tokenizer.ggml.bos_token_id"),
        "eos_token_id": field(reader, "tokenizer.ggml.eos_token_id"),
        "unknown_token_id": field(reader, "tokenizer.ggml.unknown_token_id"),
        "padding_token_id": field(reader, "tokenizer.ggml.padding_token_id"),
        "add_bos_token": field(reader, "tokenizer.ggml.add_bos_token"),
        "chat_template": field(reader, "tokenizer.chat_template"),
    }
    (out_dir / "gguf_spec.json").write_text(json.dumps(spec))
    tokenizer = build_tokenizer(spec)
    tokenizer.save(str(out_dir / "tokenizer.json"))
    (out_dir / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": spec["tokens"][spec["bos_token_id"]],
        "eos_token": spec["tokens"][spec["eos_token_id"]],
        "add_bos_token": bool(spec["add_bos_token"]),
        "chat_template": spec["chat_template"],
    }))
    cases = [{"text": text, "ids": tokenizer.encode(text, add_special_tokens=False).ids} for text in test_strings()]
    print(json.dumps({"cases": cases}))


if __name__ == "__main__":
    main()
