"""Writes the tokenizer fuzzer's seed corpus into the directory given as the
only argument: plain, multilingual and emoji text, added tokens, invalid
UTF-8, and small tokenizer.json documents (valid and almost valid)."""
import json
import pathlib
import sys

TEXTS = [
    "hello world", "Hello, world! 123 4567", "  leading and  double spaces\t\ttabs\n\nlines\r\n",
    "I'm you're it's we'll they've", "こんにちは世界 你好 안녕 Привет", "😀👍🏽👨‍👩‍👧 🇫🇷", "é€🎉",
    "<|start|>hello<|end|>", "a<think>b</think>", "<|end", "▁space marker", "<0x41> literal",
    "def f(x):\n    return x * 2\n",
]
INVALID = [b"\xff\xfe\xfd", b"a\x80b", b"\xf0\x9f\x98", b"\xe2\x82", b"\xed\xa0\x80", b"\xc0\xaf"]


def tokenizer_json(pre_tokenizer, merges):
    return {
        "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "\u0120": 3, "\u0120ab": 4}, "merges": merges},
        "added_tokens": [{"id": 5, "content": "<|x|>", "special": True}],
        "normalizer": None,
        "pre_tokenizer": pre_tokenizer,
        "decoder": {"type": "ByteLevel"},
    }


def main():
    out = pathlib.Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}
    documents = [
        tokenizer_json(byte_level, ["a b", "\u0120 ab"]),
        tokenizer_json({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, byte_level]},
                       [["a", "b"], ["\u0120", "ab"]]),
        tokenizer_json(byte_level, ["a c"]),
        {"model": {"type": "WordPiece", "vocab": {"a": 0}}},
    ]
    seeds = [text.encode("utf-8") for text in TEXTS] + INVALID + [json.dumps(doc).encode() for doc in documents]
    for index, seed in enumerate(seeds):
        (out / f"seed_{index:02d}").write_bytes(seed)


if __name__ == "__main__":
    main()
