"""The decode-attention model shapes the Python operator benchmarks share (no torch import, so
that bench_torch_ds_decode.py --table-from runs where torch is missing): each shape's KV heads
(32 query heads of 128 channels in both), and --models parsed against them with a clear error."""
import argparse

KV_HEADS = {"llama2-7b": 32, "llama3-8b": 8}  # Llama-2-7B: MHA; Llama-3-8B: GQA 4


def model_list(arg):
    """argparse type for --models: a comma list of KV_HEADS' names."""
    models = [m for m in arg.split(",") if m]
    unknown = [m for m in models if m not in KV_HEADS]
    if unknown or not models:
        raise argparse.ArgumentTypeError(
            f"unknown model shape(s) {unknown or [arg]}; known: {', '.join(KV_HEADS)}")
    return models
