// llama2.c checkpoints (Karpathy's run.c format): the legacy v0 header of seven
// int32 and the v1 "ak42" fp32 export. Weights are exposed under Hugging Face
// tensor names so one model implementation serves both formats.
#pragma once

#include <string>

#include "model/config.h"
#include "model/weight_store.h"

namespace dpserve {

// Maps the checkpoint and fills config + store; throws dpserve::Error on a bad file.
void load_llama2c(const std::string& path, ModelConfig& config, WeightStore& store);

}  // namespace dpserve
