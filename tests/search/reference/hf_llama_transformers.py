"""Hugging Face transformers' own Llama forward of a folder, for checking
that an elastic checkpoint loads and runs as a plain llama model there:
AutoModelForCausalLM.from_pretrained in float64 on the CPU, every position's
logits. The elastic extras (the "elastic" config key, the linear maps stored
beside the blocks) must leave the model transformers builds unchanged, so
the tensors it reports unused may only be those maps.

Usage:
  hf_llama_transformers.py FOLDER --tokens 1,2,3 --out logits.bin
      writes raw little-endian float32 logits [tokens x vocab]
  hf_llama_transformers.py --available
      prints "yes" when torch and transformers import, else "no"
"""
import argparse
import sys


def available():
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except Exception:  # a broken install counts as missing
        return False
    return True


def forward(folder, tokens):
    import torch
    from transformers import AutoModelForCausalLM

    model, info = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float64, output_loading_info=True)
    if model.config.model_type != "llama":
        sys.exit(f"expected a llama model, found {model.config.model_type}")
    unexpected = [name for name in info["unexpected_keys"]
                  if not name.endswith(("linear_attn.weight", "linear_mlp.weight"))]
    if info["missing_keys"] or unexpected or info["mismatched_keys"]:
        sys.exit(f"transformers did not load the folder whole: missing {info['missing_keys']}, "
                 f"unexpected {unexpected}, mismatched {info['mismatched_keys']}")
    model.eval()
    with torch.no_grad():
        return model(torch.tensor([tokens])).logits[0].numpy()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?")
    parser.add_argument("--tokens")
    parser.add_argument("--out")
    parser.add_argument("--available", action="store_true")
    args = parser.parse_args()
    if args.available:
        print("yes" if available() else "no")
        return
    if not (args.folder and args.tokens and args.out):
        parser.error("FOLDER, --tokens and --out are required")
    tokens = [int(t) for t in args.tokens.split(",")]
    forward(args.folder, tokens).astype("<f4").tofile(args.out)


if __name__ == "__main__":
    main()
