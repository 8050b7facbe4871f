// The tokenizer of a server started with --skip-tokenizer-init (SGLang's flag): no vocabulary is
// loaded, requests carry token ids and responses carry ids only. It knows the model's vocabulary
// size and its BOS / EOS ids (from config.json); it has no text: encoding is an error, decoding
// gives "".
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace dpserve {

std::unique_ptr<Tokenizer> make_ids_only_tokenizer(int64_t vocab_size, int32_t bos_id, std::vector<int32_t> eos_ids);

}  // namespace dpserve
