"""Writes the config.json fuzzer's seed corpus: small valid Llama configs
(Llama 3 with llama3 RoPE scaling, SmolLM2-like, the newer rope_parameters
spelling) and a Nemotron-NAS config with every block kind, into the folder
given as the one argument. Python 3 standard library only."""
import json
import sys
from pathlib import Path

LLAMA3 = {
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 256,
    "intermediate_size": 768, "num_attention_heads": 8, "num_key_value_heads": 2, "num_hidden_layers": 4,
    "vocab_size": 1024, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
    "hidden_act": "silu", "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": False,
    "bos_token_id": 1, "eos_token_id": [2, 3],
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 1024},
}

SMOLLM2 = {
    "model_type": "llama", "hidden_size": 576, "intermediate_size": 1536, "num_attention_heads": 9,
    "num_key_value_heads": 3, "num_hidden_layers": 30, "vocab_size": 49152, "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-5, "rope_theta": 100000, "rope_scaling": None, "tie_word_embeddings": True,
    "bos_token_id": 1, "eos_token_id": 2, "head_dim": 64,
}

ROPE_PARAMETERS = {key: value for key, value in LLAMA3.items() if key not in ("rope_scaling", "rope_theta")}
ROPE_PARAMETERS["rope_parameters"] = dict(LLAMA3["rope_scaling"], rope_theta=500000.0)


def block(group=None, ffn_mult=None, attention="gqa", ffn="swiglu"):
    return {
        "attention": {"n_heads_in_group": group, "no_op": attention == "none",
                      "replace_with_linear": attention == "linear"},
        "ffn": {"ffn_mult": ffn_mult, "no_op": ffn == "none", "replace_with_linear": ffn == "linear"},
    }


NEMOTRON = {
    "model_type": "nemotron-nas", "architectures": ["DeciLMForCausalLM"], "hidden_size": 8192,
    "num_attention_heads": 64, "num_key_value_heads": None, "intermediate_size": None, "num_hidden_layers": 6,
    "vocab_size": 1024, "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
    "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2,
    "block_configs": [block(8, 5.25), block(16, 2.625), block(attention="linear", ffn_mult=1.3125),
                      block(attention="none", ffn="linear"), block(64, ffn="none"), block(8, 1.0)],
}


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for name, config in {"llama3": LLAMA3, "smollm2": SMOLLM2, "rope_parameters": ROPE_PARAMETERS,
                         "nemotron_nas": NEMOTRON}.items():
        (out / f"{name}.json").write_text(json.dumps(config, indent=1))


if __name__ == "__main__":
    main()
