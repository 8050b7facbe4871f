#include "kv/radix_cache.h"

#include <algorithm>
#include <queue>
#include <utility>

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

void RadixCache::touch(Node* n) {
  bool leaf = n->children.empty();
  if (leaf) leaves_.erase(lru_key(n));
  n->last_use = clock_;
  if (leaf) leaves_.emplace(lru_key(n), n);
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
    touch(n);
    pool_.retain(n->page);
    pages.push_back(n->page);
  }
  if (count) hit_tokens_ += int64_t(pages.size()) * page_size_;
  return pages;
}

int64_t RadixCache::cached_prefix_pages(std::span<const int32_t> tokens, int64_t max_pages) const {
  const Node* n = &root_;
  std::vector<int32_t> key(static_cast<size_t>(page_size_));
  int64_t i = 0;
  for (; i < max_pages && (i + 1) * page_size_ <= int64_t(tokens.size()); ++i) {
    std::copy_n(tokens.begin() + i * page_size_, page_size_, key.begin());
    auto it = n->children.find(key);
    if (it == n->children.end()) break;
    n = it->second.get();
  }
  return i;
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
      if (n != &root_ && n->children.empty()) leaves_.erase(lru_key(n));
      auto child = std::make_unique<Node>();
      child->key = key;
      child->page = pages[size_t(i)];
      child->serial = next_serial_++;
      child->parent = n;
      child->last_use = clock_;
      leaves_.emplace(lru_key(child.get()), child.get());
      pool_.retain(child->page);
      ++n_nodes_;
      ++adopted;
      it = n->children.emplace(std::move(key), std::move(child)).first;
    }
    n = it->second.get();
    touch(n);
  }
  return adopted;
}

int64_t RadixCache::evict(int64_t n_pages) {
  if (n_pages <= 0) return 0;
  // Two sources in LRU order: the leaf set (skipping pages in use), and the parents that become
  // unused leaves during this call, in a small heap, so a whole chain can go in one call.
  using Entry = std::pair<LruKey, Node*>;
  auto later = [](const Entry& a, const Entry& b) { return a.first > b.first; };
  std::priority_queue<Entry, std::vector<Entry>, decltype(later)> exposed(later);
  auto it = leaves_.begin();
  int64_t freed = 0;
  while (freed < n_pages) {
    while (it != leaves_.end() && pool_.refcount(it->second->page) != 1) ++it;
    Node* n = nullptr;
    if (it != leaves_.end() && (exposed.empty() || it->first < exposed.top().first)) {
      n = it->second;
      it = leaves_.erase(it);
    } else if (!exposed.empty()) {
      n = exposed.top().second;
      exposed.pop();
    } else {
      break;
    }
    Node* parent = n->parent;
    pool_.release(n->page);
    ++freed;
    --n_nodes_;
    parent->children.erase(n->key);  // destroys n (a leaf)
    if (parent != &root_ && parent->children.empty()) {
      if (pool_.refcount(parent->page) == 1)
        exposed.emplace(lru_key(parent), parent);
      else
        leaves_.emplace(lru_key(parent), parent);  // in use: skipped by the scan, kept as a leaf
    }
  }
  for (; !exposed.empty(); exposed.pop()) leaves_.emplace(exposed.top().first, exposed.top().second);
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
