"""Reference for the SentencePiece tokenizer: trains a tiny BPE model with the
`sentencepiece` package and prints its pieces and the ids it gives.

Usage: sentencepiece_reference.py OUTDIR

The model keeps text as it is (identity normalisation, whitespace kept) and
falls back to <0xNN> byte pieces, as Llama 2's does, so the comparison is
about the merging, the '▁' spaces, the dummy prefix and the byte fallback.
Prints {"pieces": [{"piece", "score", "type"}], "unk_id", "bos_id", "eos_id",
"cases": [{"text", "ids"}]} where type is GGUF's token type (1 normal,
2 unknown, 3 control, 5 unused, 6 byte).
"""
import json
import pathlib
import random
import sys

import sentencepiece as spm

TRAINING_TEXT = """The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs.
Tokenizers split text into pieces, and pieces merge into larger pieces when the model has seen them often.
Byte pair encoding starts from characters and merges the most frequent pairs first.
In 2024 the model read 1234 lines, 56 of them twice, and wrote them down again.
Hello world! Hello there, world. Say hello to the world of tokenization.
naïve café résumé, déjà vu, über, señor, smörgåsbord.
"""


def piece_type(processor, index):
    if processor.IsUnknown(index):
        return 2
    if processor.IsControl(index):
        return 3
    if processor.IsUnused(index):
        return 5
    if processor.IsByte(index):
        return 6
    return 1


def test_strings():
    fixed = ["hello world", "Hello world", "the lazy dog", " leading space", "trailing ", "two  spaces",
             "   three leading", "tab\there", "line\nbreak", "1234 5678 90", "naïve café", "中文 text",
             "emoji 😀 here", "über señor", "déjà", "x", "", "qqq zzz", "The quick brown fox jumps over the lazy dog.",
             "Tokenizers tokenize tokenization", "merges merged merging", "!!!", "a.b,c;d"]
    rng = random.Random(7)
    alphabet = "abcdefghijklmnopqrstuvwxyz THEQUICK.,;!?0123456789éïüñ中😀\t"
    words = ["the", "hello", "world", "pieces", "merge", "fox", "dog", "token", "izers", "1234", "café"]
    generated = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30))) for _ in range(120)]
    generated += [" ".join(rng.choice(words) for _ in range(rng.randint(1, 8))) for _ in range(80)]
    return fixed + generated


def main():
    out_dir = pathlib.Path(sys.argv[1])
    corpus = out_dir / "corpus.txt"
    corpus.write_text(TRAINING_TEXT * 3, encoding="utf-8")
    prefix = out_dir / "tiny"
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(prefix), model_type="bpe", vocab_size=400, byte_fallback=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=True,
        character_coverage=1.0, split_digits=False, minloglevel=2)
    processor = spm.SentencePieceProcessor(model_file=str(prefix) + ".model")
    pieces = [{"piece": processor.IdToPiece(i), "score": processor.GetScore(i), "type": piece_type(processor, i)}
              for i in range(processor.GetPieceSize())]
    cases = [{"text": text, "ids": processor.EncodeAsIds(text)} for text in test_strings()]
    print(json.dumps({"pieces": pieces, "unk_id": processor.unk_id(), "bos_id": processor.bos_id(),
                      "eos_id": processor.eos_id(), "cases": cases}))


if __name__ == "__main__":
    main()
