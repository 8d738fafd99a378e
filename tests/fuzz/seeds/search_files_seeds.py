"""Writes the search-files fuzzer's seed corpus into the folder given as the
one argument: for the harness's fixed model (two GQA + SwiGLU layers with 6
query heads in 3 KV groups, head size 64, FFN width 256, the first storing a
linear map beside each half, then a linear attention layer without FFN), a
valid block library, latency table, budget
table, "elastic" object and sub-network file, each behind the byte that
picks its reader, plus a few near-valid variants of each (a wrong type, an
out-of-range size, a missing key). Python 3 standard library only."""
import copy
import json
import sys
from pathlib import Path

BLOCK_LIBRARY, LATENCY_TABLE, BUDGET_TABLE, ELASTIC_SETS, SUBNETWORK = range(5)
GQA_LAYERS = 2
HEADS, GROUP, HEAD_DIM, WIDTH = 6, 2, 64, 256
CALIBRATION = {"file": "calibration.txt", "fnv1a64": "cbf29ce484222325", "tokens": 1024, "window": 128}


def block_library():
    gqa = {
        "attention": [{"variant": f"heads:{h}", "heads": h, "kl": 0.01 * (6 - h), "lm_loss": 2.3} for h in (6, 4, 2)]
        + [{"variant": "none", "kl": 0.2, "lm_loss": 2.6},
           {"variant": "linear", "kl": 0.1, "lm_loss": 2.5, "fit_error": 0.4},
           {"variant": "linear_init", "kl": 0.3, "lm_loss": 2.7, "fit_error": 0.9}],
        "ffn": [{"variant": f"width:{w}", "mlp_width": w, "kl": 0.001 * (256 - w), "lm_loss": 2.4}
                for w in (256, 192, 128, 64)]
        + [{"variant": "none", "kl": 0.3, "lm_loss": 2.8},
           {"variant": "linear", "kl": 0.05, "lm_loss": 2.4, "fit_error": 0.2}],
    }
    plain = copy.deepcopy(gqa)  # the second layer stores no linear maps
    plain["attention"] = [v for v in plain["attention"] if v["variant"] != "linear"]
    plain["ffn"] = [v for v in plain["ffn"] if v["variant"] != "linear"]
    linear = {"attention": [{"variant": "linear", "kl": 0.0, "lm_loss": 2.31},
                            {"variant": "none", "kl": 0.1, "lm_loss": 2.5}],
              "ffn": [{"variant": "none", "kl": 0.0, "lm_loss": 2.3}]}
    return {"format": 1, "scored_tokens": 1024, "parent_lm_loss": 2.31, "calibration": CALIBRATION,
            "layers": [gqa, plain, linear]}


def latency_table():
    def attention(heads):
        return {"variant": f"heads:{heads}", "heads": heads, "decode_s": 1e-4 * heads, "prefill_s": 1e-3 * heads,
                "weight_bytes": 4096 * heads, "kv_bytes_per_token": 2 * (heads // GROUP) * HEAD_DIM * 4}

    def ffn(width):
        return {"variant": f"width:{width}", "mlp_width": width, "decode_s": 1e-6 * width, "prefill_s": 1e-5 * width,
                "weight_bytes": 4608 * width}

    none_attention = {"variant": "none", "heads": 0, "decode_s": 0.0, "prefill_s": 0.0, "weight_bytes": 0,
                      "kv_bytes_per_token": 0}
    none_ffn = {"variant": "none", "mlp_width": 0, "decode_s": 0.0, "prefill_s": 0.0, "weight_bytes": 0}
    linear_attention = {"variant": "linear", "heads": 0, "decode_s": 5e-5, "prefill_s": 5e-4, "weight_bytes": 591360,
                        "kv_bytes_per_token": 0}
    linear_ffn = {"variant": "linear", "mlp_width": 0, "decode_s": 5e-5, "prefill_s": 5e-4, "weight_bytes": 591360}
    gqa = {"attention": [attention(h) for h in (6, 4, 2)] + [none_attention],
           "ffn": [ffn(w) for w in (256, 192, 128, 64)] + [none_ffn]}
    stored = copy.deepcopy(gqa)  # the first layer's linear maps, before "none"
    stored["attention"].insert(3, linear_attention)
    stored["ffn"].insert(4, linear_ffn)
    linear = {"attention": [copy.deepcopy(linear_attention), copy.deepcopy(none_attention)],
              "ffn": [copy.deepcopy(none_ffn)]}
    check = {"name": "full", "predicted_decode_s": 0.002, "measured_decode_s": 0.0021, "predicted_prefill_s": 0.02,
             "measured_prefill_s": 0.021}
    return {"format": 1, "executor": "host", "threads": 2, "device": "fuzz", "decode": {"batch": 1, "context": 512,
                                                                                        "steps": 32},
            "prefill": {"tokens": 512}, "kv_element_bytes": 4,
            "fixed": {"decode_s": 1e-4, "prefill_s": 1e-3, "weight_bytes": 393216},
            "layers": [stored, gqa, linear], "checks": [check]}


def subnetwork(heads=6, width=256, skip_attention=False, skip_ffn=False, linear_ffn=False):
    layer = {"heads": heads, "mlp_width": width, "skip_attention": skip_attention, "skip_ffn": skip_ffn}
    first = dict(layer, linear_ffn=True) if linear_ffn else layer
    return {"layers": [first, dict(layer), {"heads": 0, "mlp_width": 0, "skip_attention": False, "skip_ffn": True}]}


def budget_table():
    entries = [{"fraction": 0.5, "latency_s": 0.001, "memory_bytes": 2.5e6, "predicted_score": 0.4,
                "config": subnetwork(2, 128, skip_ffn=True)},
               {"fraction": 0.75, "latency_s": 0.0015, "memory_bytes": 3.5e6,
                "config": subnetwork(4, 192, linear_ffn=True)},
               {"fraction": 1.0, "latency_s": 0.002, "memory_bytes": 4.5e6, "predicted_score": 0.0,
                "config": subnetwork()}]
    return {"format": 1, "full_latency_s": 0.002, "phase": "decode", "entries": entries,
            "search": {"solver": "cbc"}}


def elastic_sets():
    gqa = {"mlp_widths": [256, 192, 128, 64], "heads": [6, 4, 2], "attention_contribution": 0.11,
           "ffn_contribution": 0.19}
    return {"format": 1, "ranking": {"neurons": "flap", "heads": "minitron"}, "calibration": CALIBRATION,
            "layers": [gqa, dict(gqa), {"mlp_widths": [], "heads": [], "attention_contribution": 0.05,
                                        "ffn_contribution": 0.0}]}


def variants():
    """(reader, name, document) for every valid file and its near-valid variants."""
    library = block_library()
    yield BLOCK_LIBRARY, "block_library", library
    bad = copy.deepcopy(library)
    bad["layers"][0]["attention"][1]["heads"] = 3
    bad["layers"][0]["attention"][1]["variant"] = "heads:3"
    yield BLOCK_LIBRARY, "block_library_partial_group", bad
    bad = copy.deepcopy(library)
    bad["layers"][1]["ffn"][0]["mlp_width"] = 256.5
    yield BLOCK_LIBRARY, "block_library_fractional_width", bad
    bad = copy.deepcopy(library)
    bad["calibration"] = ["calibration.txt"]
    yield BLOCK_LIBRARY, "block_library_calibration_array", bad

    table = latency_table()
    yield LATENCY_TABLE, "latency_table", table
    bad = copy.deepcopy(table)
    bad["kv_element_bytes"] = 2 ** 32 + 4
    yield LATENCY_TABLE, "latency_table_huge_element", bad
    bad = copy.deepcopy(table)
    del bad["layers"][2]["ffn"][0]["mlp_width"]
    yield LATENCY_TABLE, "latency_table_missing_width", bad
    bad = copy.deepcopy(table)
    bad["fixed"]["weight_bytes"] = 2 ** 63 - 1
    yield LATENCY_TABLE, "latency_table_huge_bytes", bad

    budgets = budget_table()
    yield BUDGET_TABLE, "budget_table", budgets
    bad = copy.deepcopy(budgets)
    bad["entries"][1]["fraction"] = 0.25
    yield BUDGET_TABLE, "budget_table_unordered", bad
    bad = copy.deepcopy(budgets)
    bad["entries"][0]["config"]["layers"][2]["heads"] = 6
    yield BUDGET_TABLE, "budget_table_linear_heads", bad

    sets = elastic_sets()
    yield ELASTIC_SETS, "elastic_sets", sets
    bad = copy.deepcopy(sets)
    bad["layers"][0]["heads"] = [6, 3]
    yield ELASTIC_SETS, "elastic_sets_partial_group", bad
    bad = copy.deepcopy(sets)
    bad["layers"][1]["attention_contribution"] = "high"
    yield ELASTIC_SETS, "elastic_sets_text_contribution", bad
    bad = copy.deepcopy(sets)
    bad["layers"][2] = [256]
    yield ELASTIC_SETS, "elastic_sets_layer_array", bad

    yield SUBNETWORK, "subnetwork_full", subnetwork()
    yield SUBNETWORK, "subnetwork_small", subnetwork(2, 64, skip_attention=True)
    yield SUBNETWORK, "subnetwork_too_wide", subnetwork(6, 512)
    yield SUBNETWORK, "subnetwork_linear_ffn", subnetwork(4, 128, linear_ffn=True)
    bad = subnetwork()
    bad["layers"][1]["linear_attention"] = True
    yield SUBNETWORK, "subnetwork_linear_not_stored", bad


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for reader, name, document in variants():
        (out / f"{name}.bin").write_bytes(bytes([reader]) + json.dumps(document, indent=1).encode())


if __name__ == "__main__":
    main()
