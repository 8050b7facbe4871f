#include "engine/request_state.h"

#include <utility>

namespace dpserve {

RequestState::RequestState(uint64_t id_, Request req_, std::vector<int32_t> prompt, int64_t max_new_)
    : id(id_),
      req(std::move(req_)),
      tokens(std::move(prompt)),
      prompt_len(int64_t(tokens.size())),
      max_new(max_new_),
      sampler(req.params, id_),
      think(req.think_budget) {
  // Prompt ids count for the repetition penalty; embedding rows have no id to penalize.
  sampler.add_prompt(req.input_ids.data(), int64_t(req.input_ids.size()));
}

}  // namespace dpserve
