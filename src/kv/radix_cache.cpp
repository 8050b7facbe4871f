#include "kv/radix_cache.h"

#include <algorithm>
#include <queue>
#include <tuple>

#include "core/check.h"

namespace dpserve {

RadixCache::RadixCache(KVPool& pool) : pool_(pool), page_size_(pool.page_size()) {}

RadixCache::~RadixCache() {
  // Post-order walk without recursion depth limits: a long prompt is a long chain.
  std::vector<Node*> stack{&root_};
  std::vector<Node*> order;
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    order.push_back(n);
    for (auto& [k, c] : n->children) stack.push_back(c.get());
  }
  for (Node* n : order)
    if (n != &root_) pool_.release(n->page);
  // Destroy children iteratively too (a unique_ptr chain would recurse as deep as the longest prompt).
  for (auto it = order.rbegin(); it != order.rend(); ++it) (*it)->children.clear();
}

std::vector<int32_t> RadixCache::match(std::span<const int32_t> tokens, int64_t max_pages, bool count) {
  ++clock_;
  if (count) query_tokens_ += int64_t(tokens.size());
  std::vector<int32_t> pages;
  Node* n = &root_;
  std::vector<int32_t> key(static_cast<size_t>(page_size_));
  for (int64_t i = 0; i < max_pages && (i + 1) * page_size_ <= int64_t(tokens.size()); ++i) {
    std::copy_n(tokens.begin() + i * page_size_, page_size_, key.begin());
    auto it = n->children.find(key);
    if (it == n->children.end()) break;
    n = it->second.get();
    n->last_use = clock_;
    pool_.retain(n->page);
    pages.push_back(n->page);
  }
  if (count) hit_tokens_ += int64_t(pages.size()) * page_size_;
  return pages;
}

int64_t RadixCache::insert(std::span<const int32_t> tokens, std::span<const int32_t> pages, int64_t n_pages) {
  DP_CHECK(n_pages >= 0 && n_pages <= int64_t(pages.size()) && n_pages * page_size_ <= int64_t(tokens.size()));
  ++clock_;
  int64_t adopted = 0;
  Node* n = &root_;
  for (int64_t i = 0; i < n_pages; ++i) {
    std::vector<int32_t> key(tokens.begin() + i * page_size_, tokens.begin() + (i + 1) * page_size_);
    auto it = n->children.find(key);
    if (it == n->children.end()) {
      auto child = std::make_unique<Node>();
      child->key = key;
      child->page = pages[size_t(i)];
      child->serial = next_serial_++;
      child->parent = n;
      pool_.retain(child->page);
      ++n_nodes_;
      ++adopted;
      it = n->children.emplace(std::move(key), std::move(child)).first;
    }
    n = it->second.get();
    n->last_use = clock_;
  }
  return adopted;
}

int64_t RadixCache::evict(int64_t n_pages) {
  if (n_pages <= 0) return 0;
  // Min-heap on (last_use, serial): both are plain counters, so the order is the same on every rank.
  using Entry = std::tuple<uint64_t, uint64_t, Node*>;
  auto later = [](const Entry& a, const Entry& b) {
    return std::tie(std::get<0>(a), std::get<1>(a)) > std::tie(std::get<0>(b), std::get<1>(b));
  };
  std::priority_queue<Entry, std::vector<Entry>, decltype(later)> heap(later);
  std::vector<Node*> stack{&root_};
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (auto& [k, c] : n->children) stack.push_back(c.get());
    if (n != &root_ && n->children.empty() && pool_.refcount(n->page) == 1)
      heap.emplace(n->last_use, n->serial, n);
  }
  int64_t freed = 0;
  while (freed < n_pages && !heap.empty()) {
    Node* n = std::get<2>(heap.top());
    heap.pop();
    Node* parent = n->parent;
    pool_.release(n->page);
    ++freed;
    --n_nodes_;
    parent->children.erase(n->key);  // destroys n
    if (parent != &root_ && parent->children.empty() && pool_.refcount(parent->page) == 1)
      heap.emplace(parent->last_use, parent->serial, parent);
  }
  evicted_pages_ += freed;
  return freed;
}

int64_t RadixCache::evictable_pages() const {
  // A node can go once its whole subtree can: count subtrees whose pages only the cache holds.
  // Children are visited before parents via a reversed pre-order.
  std::vector<const Node*> order;
  std::vector<const Node*> stack{&root_};
  while (!stack.empty()) {
    const Node* n = stack.back();
    stack.pop_back();
    order.push_back(n);
    for (auto& [k, c] : n->children) stack.push_back(c.get());
  }
  std::map<const Node*, bool> free_subtree;  // lookup only, never iterated
  int64_t count = 0;
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    const Node* n = *it;
    if (n == &root_) continue;
    bool ok = pool_.refcount(n->page) == 1;
    for (auto& [k, c] : n->children) ok = ok && free_subtree[c.get()];
    free_subtree[n] = ok;
    if (ok) ++count;
  }
  return count;
}

}  // namespace dpserve
