// dsinfer-make-model: writes a random-weight Llama checkpoint, deterministically from a seed.
// The preset "demo" is the embedded demo model the README serves until a trained one
// replaces it; "tiny" is what the integration tests use.
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "engine/checkpoint_writer.h"
#include "engine/tools/cli_flags.h"

ABSL_FLAG(std::string, out, "", "output directory");
ABSL_FLAG(std::string, preset, "demo", "demo | tiny");
ABSL_FLAG(uint64_t, seed, 20261128, "weight seed");
ABSL_FLAG(int64_t, vocab_size, 0, "override the preset's vocabulary size");

int main(int argc, char** argv) {
  dsinfer::ParseFlagsWithEnvironment(argc, argv, "dsinfer-make-model --out DIR [--preset demo|tiny]");
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) {
    std::fprintf(stderr, "dsinfer-make-model: error: --out is required\n");
    return 1;
  }
  dsinfer::ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  const std::string preset = absl::GetFlag(FLAGS_preset);
  if (preset == "demo") {
    // Llama-3-like: head_dim 128, GQA 4:1 — the shape Double Sparsity is meant for.
    c.vocab_size = 32000;
    c.hidden_size = 256;
    c.intermediate_size = 768;
    c.num_layers = 4;
    c.num_heads_q = 4;
    c.num_heads_kv = 1;
    c.head_dim = 128;
    c.max_position_embeddings = 8192;
    c.tie_word_embeddings = true;
    c.rope.theta = 500000.0;
    c.bos_token_id = 1;
    c.eos_token_ids = {2};
  } else if (preset == "tiny") {
    c.vocab_size = 512;
    c.hidden_size = 128;
    c.intermediate_size = 256;
    c.num_layers = 2;
    c.num_heads_q = 4;
    c.num_heads_kv = 2;
    c.head_dim = 32;
    c.max_position_embeddings = 2048;
    c.bos_token_id = 1;
    c.eos_token_ids = {2};
  } else {
    std::fprintf(stderr, "dsinfer-make-model: error: unknown --preset '%s' (demo, tiny)\n", preset.c_str());
    return 1;
  }
  if (absl::GetFlag(FLAGS_vocab_size) > 0) c.vocab_size = absl::GetFlag(FLAGS_vocab_size);
  absl::Status s = dsinfer::WriteRandomModel(out, c, absl::GetFlag(FLAGS_seed));
  if (!s.ok()) {
    std::fprintf(stderr, "dsinfer-make-model: error: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  std::printf("wrote %s (%s preset, seed %llu)\n", out.c_str(), preset.c_str(),
              static_cast<unsigned long long>(absl::GetFlag(FLAGS_seed)));
  return 0;
}
