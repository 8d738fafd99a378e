"""Reference for the Hugging Face file writers: HF reads the files the library wrote.

Usage: hugging_face_files_reference.py FOLDER

FOLDER holds the written tokenizer.json, tokenizer_config.json and a Llama
config.json, and texts.json (a list of strings). Prints
  {"tokenizers": [ids...], "transformers": [ids...], "config": {...}}:
the ids `tokenizers.Tokenizer.from_file` and `transformers.AutoTokenizer`
give each text (special tokens added as the files say), and the fields
`transformers.AutoConfig` reads from config.json.
"""
import json
import pathlib
import sys

from tokenizers import Tokenizer
from transformers import AutoConfig, AutoTokenizer

folder = pathlib.Path(sys.argv[1])
texts = json.loads((folder / "texts.json").read_text(encoding="utf-8"))

tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
fast = AutoTokenizer.from_pretrained(str(folder))
config = AutoConfig.from_pretrained(str(folder))

# transformers 5 keeps RoPE settings in rope_parameters; 4.x in rope_theta / rope_scaling.
rope = dict(getattr(config, "rope_parameters", None) or {})
if not rope:
    rope = dict(config.rope_scaling or {})
    rope["rope_theta"] = config.rope_theta
fields = ["model_type", "hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads",
          "num_hidden_layers", "head_dim", "rms_norm_eps", "max_position_embeddings", "vocab_size",
          "tie_word_embeddings", "bos_token_id", "eos_token_id"]
summary = {name: getattr(config, name) for name in fields}
summary["rope_theta"] = rope.get("rope_theta")
summary["rope_type"] = rope.get("rope_type", rope.get("type"))
summary["rope_factor"] = rope.get("factor")

print(json.dumps({
    "tokenizers": [tokenizer.encode(text).ids for text in texts],
    "transformers": [fast(text)["input_ids"] for text in texts],
    "config": summary,
}))
