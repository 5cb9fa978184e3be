// What one forward step computes: new tokens of one or more sequences, packed row after row
// (sequence by sequence), each sequence's rows at consecutive positions after the tokens it
// already has in the KV pool. Prefill chunks and decode tokens mix freely in one batch.
#ifndef DSINFER_ENGINE_FORWARD_BATCH_H_
#define DSINFER_ENGINE_FORWARD_BATCH_H_

#include <cstdint>
#include <vector>

#include "engine/attention_options.h"
#include "offload/kv_block_pool.h"

namespace dsinfer {

struct BatchSequence {
  KvBlockPool::SequenceId kv = 0;  // its block table in the pool (reserved for the new tokens)
  int64_t first_row = 0;           // its first row in the packed batch
  int64_t num_rows = 0;            // its new tokens this step
  int64_t start_position = 0;      // tokens it already has cached = position of its first row
  // The request's attention options; nullptr = the engine's defaults.
  const AttentionOptions* attention = nullptr;
};

struct ForwardBatch {
  std::vector<int32_t> token_ids;  // [rows]
  std::vector<int32_t> positions;  // [rows]
  std::vector<BatchSequence> sequences;
  // Rows whose logits are wanted (e.g. each sequence's last row; all rows for prompt logprobs).
  std::vector<int64_t> logit_rows;

  int64_t rows() const { return static_cast<int64_t>(token_ids.size()); }
  // Appends `ids` as the next tokens of sequence `kv` which has `cached` tokens already.
  // When `want_all_logits`, every row's logits are requested, else only the last row's.
  void Add(KvBlockPool::SequenceId kv, const int32_t* ids, int64_t count, int64_t cached,
           bool want_all_logits) {
    BatchSequence s{kv, rows(), count, cached};
    for (int64_t i = 0; i < count; ++i) {
      token_ids.push_back(ids[i]);
      positions.push_back(static_cast<int32_t>(cached + i));
      if (want_all_logits || i + 1 == count) logit_rows.push_back(s.first_row + i);
    }
    sequences.push_back(s);
  }
};

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_FORWARD_BATCH_H_
