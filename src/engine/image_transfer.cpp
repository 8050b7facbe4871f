#include "engine/image_transfer.h"

#include <algorithm>
#include <climits>
#include <cstring>

#include "core/check.h"

namespace dpserve {

namespace {
constexpr int kImageTag = 7002;  // apart from the group-leader dispatch's control tag
}

const char* to_string(ImageTransferMode m) { return m == ImageTransferMode::kPipelined ? "pipelined" : "step-message"; }

ImageTransfer::ImageTransfer(const Topology& topo, const Comm& world, ImageTransferMode mode, int64_t bytes_per_step)
    : topo_(topo), mode_(mode), bytes_per_step_(bytes_per_step), transfers_(world, kImageTag) {
  // One chunk is one MPI message, whose count is an int.
  DP_CHECK(bytes_per_step_ > 0 && bytes_per_step_ <= INT32_MAX, "image bytes per step {}", bytes_per_step_);
}

void ImageTransfer::plan(StepControl& c) {
  planned_.clear();
  planned_src_.clear();
  c.image_chunks.clear();
  if (mode_ == ImageTransferMode::kPipelined) {
    for (NewRequest& nr : c.new_requests) {
      if (nr.req.images.empty()) continue;
      nr.images_follow = true;
      for (size_t k = 0; k < nr.req.images.size(); ++k)
        queue_.push_back(Outgoing{nr.id, nr.group, uint32_t(k),
                                  std::make_shared<std::vector<uint8_t>>(std::move(nr.req.images[k].rgb))});
      for (ImageInput& img : nr.req.images) img.rgb.clear();
    }
  }
  for (uint64_t id : c.cancels)
    std::erase_if(queue_, [id](const Outgoing& o) { return o.id == id; });
  // First in, first out: the oldest request's images complete first, and no step moves more than the
  // budget, so one huge image delays the others' steps by a bounded copy only.
  int64_t budget = bytes_per_step_;
  while (budget > 0 && !queue_.empty()) {
    Outgoing& o = queue_.front();
    const uint64_t n = std::min<uint64_t>(uint64_t(budget), o.rgb->size() - o.sent);
    planned_.push_back(ImageChunk{o.id, o.group, o.image, o.sent, n});
    planned_src_.push_back(o.rgb->data() + o.sent);
    o.sent += n;
    budget -= int64_t(n);
    if (o.sent == o.rgb->size()) {
      step_bufs_.push_back(o.rgb);
      queue_.pop_front();
    }
  }
  if (!queue_.empty()) step_bufs_.push_back(queue_.front().rgb);
  c.image_chunks = planned_;
}

void ImageTransfer::forget(const std::vector<NewRequest>& requests, StepControl& c) {
  for (const NewRequest& nr : requests) {
    std::erase_if(queue_, [&](const Outgoing& o) { return o.id == nr.id; });
    for (size_t i = planned_.size(); i-- > 0;)
      if (planned_[i].id == nr.id) {
        planned_.erase(planned_.begin() + ptrdiff_t(i));
        planned_src_.erase(planned_src_.begin() + ptrdiff_t(i));
      }
    std::erase_if(c.image_chunks, [&](const ImageChunk& ch) { return ch.id == nr.id; });
  }
}

void ImageTransfer::hold(NewRequest nr) {
  uint64_t bytes = 0;
  for (ImageInput& img : nr.req.images) {
    img.rgb.assign(size_t(img.height) * size_t(img.width) * 3, 0);
    bytes += img.rgb.size();
  }
  ++counters_.requests_held;
  const uint64_t id = nr.id;
  DP_CHECK(!held_.count(id), "request {} held twice", id);
  held_.emplace(id, Held{std::move(nr), bytes});
}

bool ImageTransfer::drop(uint64_t id, int64_t* prompt_tokens) {
  auto it = held_.find(id);
  if (it == held_.end()) return false;
  if (prompt_tokens) *prompt_tokens = int64_t(it->second.nr.req.input_ids.size());
  held_.erase(it);
  return true;
}

ImageTransfer::Held& ImageTransfer::held_for(const ImageChunk& ch) {
  // The chunk lists come from rank 0's plan; a chunk that does not fit what this rank holds means
  // the ranks disagree about the step, which no request can recover from.
  auto it = held_.find(ch.id);
  if (it == held_.end()) fail("image chunk for request {}, which this rank does not hold", ch.id);
  auto& imgs = it->second.nr.req.images;
  if (ch.image >= imgs.size() || ch.offset + ch.size > imgs[ch.image].rgb.size() || ch.size > it->second.missing)
    fail("image chunk for request {} (image {}, bytes {}+{}) is outside its images", ch.id, ch.image, ch.offset,
         ch.size);
  return it->second;
}

void ImageTransfer::start(const std::vector<ImageChunk>& chunks) {
  const bool root = topo_.rank == 0;
  const std::vector<ImageChunk>& list = root ? planned_ : chunks;
  for (size_t i = 0; i < list.size(); ++i) {
    const ImageChunk& ch = list[i];
    const bool mine = ch.group == topo_.attn_dp_rank;
    if (root) {
      // To every other rank of the chunk's group, point to point (the other groups never see it).
      for (int slot = 0; slot < topo_.attn_tp_size; ++slot) {
        const int dest = topo_.world_rank_of(ch.group, slot);
        if (dest == 0) continue;
        transfers_.send(planned_src_[i], ch.size, dest);
        counters_.bytes_sent += int64_t(ch.size);
      }
    }
    if (!mine) continue;
    Held& h = held_for(ch);
    uint8_t* dst = h.nr.req.images[ch.image].rgb.data() + ch.offset;
    if (root) {
      std::memcpy(dst, planned_src_[i], ch.size);
    } else {
      transfers_.recv(dst, ch.size, 0);
    }
    h.missing -= ch.size;
    counters_.bytes_in += int64_t(ch.size);
    ++counters_.chunks_in;
  }
}

void ImageTransfer::finish() {
  transfers_.wait_all();
  step_bufs_.clear();
  planned_.clear();
  planned_src_.clear();
}

std::vector<NewRequest> ImageTransfer::take_ready() {
  std::vector<NewRequest> out;
  for (auto it = held_.begin(); it != held_.end();) {
    if (it->second.missing == 0) {
      out.push_back(std::move(it->second.nr));
      it = held_.erase(it);
    } else {
      ++it;
    }
  }
  return out;
}

}  // namespace dpserve
