"""The decode-attention model shapes the Python operator benchmarks share (no torch import, so
that bench_torch_ds_decode.py --table-from runs where torch is missing): each shape's KV heads
(32 query heads of 128 channels in both), and comma-list flags parsed against known names with a
clear error."""
import argparse

KV_HEADS = {"llama2-7b": 32, "llama3-8b": 8}  # Llama-2-7B: MHA; Llama-3-8B: GQA 4


def names_in(known, what):
    """An argparse type for a comma list of `known`'s names (`what` names them in the error)."""
    def parse(arg):
        names = [n for n in arg.split(",") if n]
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {unknown or [arg]}; known: {', '.join(known)}")
        return names
    return parse


model_list = names_in(KV_HEADS, "model shape(s)")
