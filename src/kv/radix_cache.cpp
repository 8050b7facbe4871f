#include "kv/radix_cache.h"

#include <algorithm>
#include <queue>
#include <set>
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

void RadixCache::page_key(std::span<const int32_t> tokens, int64_t i, int32_t lora, std::string_view salt,
                          std::vector<int32_t>& key) const {
  key.assign(tokens.begin() + i * page_size_, tokens.begin() + (i + 1) * page_size_);
  if (i != 0) return;
  if (salt.empty()) {
    if (lora >= 0) key.push_back(lora);
    return;
  }
  key.push_back(lora);
  key.push_back(int32_t(salt.size()));
  for (size_t b = 0; b < salt.size(); b += 4) {
    uint32_t w = 0;
    for (size_t k = 0; k < 4 && b + k < salt.size(); ++k) w |= uint32_t(uint8_t(salt[b + k])) << (8 * k);
    key.push_back(int32_t(w));
  }
}

std::vector<int32_t> RadixCache::match(std::span<const int32_t> tokens, int64_t max_pages, bool count,
                                       int32_t lora, std::string_view salt) {
  ++clock_;
  if (count) query_tokens_ += int64_t(tokens.size());
  std::vector<int32_t> pages;
  Node* n = &root_;
  std::vector<int32_t> key;
  for (int64_t i = 0; i < max_pages && (i + 1) * page_size_ <= int64_t(tokens.size()); ++i) {
    page_key(tokens, i, lora, salt, key);
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

int64_t RadixCache::cached_prefix_pages(std::span<const int32_t> tokens, int64_t max_pages, int32_t lora,
                                        std::string_view salt) const {
  const Node* n = &root_;
  std::vector<int32_t> key;
  int64_t i = 0;
  for (; i < max_pages && (i + 1) * page_size_ <= int64_t(tokens.size()); ++i) {
    page_key(tokens, i, lora, salt, key);
    auto it = n->children.find(key);
    if (it == n->children.end()) break;
    n = it->second.get();
  }
  return i;
}

int64_t RadixCache::insert(std::span<const int32_t> tokens, std::span<const int32_t> pages, int64_t n_pages,
                           int32_t lora, std::string_view salt) {
  DP_CHECK(n_pages >= 0 && n_pages <= int64_t(pages.size()) && n_pages * page_size_ <= int64_t(tokens.size()));
  ++clock_;
  int64_t adopted = 0;
  Node* n = &root_;
  for (int64_t i = 0; i < n_pages; ++i) {
    std::vector<int32_t> key;
    page_key(tokens, i, lora, salt, key);
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
  inserted_pages_ += adopted;
  return adopted;
}

std::vector<RadixCache::Entry> RadixCache::export_nodes(int64_t max_nodes) const {
  struct Item {
    const Node* n;
    int64_t depth;
  };
  std::vector<Item> all;
  std::vector<Item> stack{{&root_, 0}};
  while (!stack.empty()) {
    Item it = stack.back();
    stack.pop_back();
    if (it.n != &root_) all.push_back(it);
    for (auto& [k, c] : it.n->children)
      if (it.n != &root_ || int64_t(k.size()) == page_size_)  // an adapter's subtree stays in memory
        stack.push_back({c.get(), it.depth + 1});
  }
  // Recent first; a parent's last use is never older than its child's (match and insert touch the
  // whole path), so ties go to the shallower node and parents come first. Serial breaks the rest.
  std::sort(all.begin(), all.end(), [](const Item& a, const Item& b) {
    if (a.n->last_use != b.n->last_use) return a.n->last_use > b.n->last_use;
    if (a.depth != b.depth) return a.depth < b.depth;
    return a.n->serial < b.n->serial;
  });
  if (int64_t(all.size()) > max_nodes) all.resize(size_t(std::max<int64_t>(0, max_nodes)));
  std::map<const Node*, int64_t> index;  // lookup only
  std::vector<Entry> out;
  out.reserve(all.size());
  for (const Item& it : all) {
    Entry e;
    if (it.n->parent != &root_) {
      auto p = index.find(it.n->parent);
      DP_CHECK(p != index.end(), "prefix cache export: a parent after its child");
      e.parent = p->second;
    }
    e.key = it.n->key;
    e.page = it.n->page;
    index.emplace(it.n, int64_t(out.size()));
    out.push_back(std::move(e));
  }
  return out;
}

bool RadixCache::import_nodes(const std::vector<Entry>& entries) {
  if (n_nodes_ != 0) return false;
  // Check everything first, so a refusal leaves the tree untouched.
  std::set<std::pair<int64_t, std::vector<int32_t>>> seen;
  for (size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    if (e.parent < -1 || e.parent >= int64_t(i) || int64_t(e.key.size()) != page_size_ || e.page < 0 ||
        e.page >= pool_.n_pages() || !seen.insert({e.parent, e.key}).second)
      return false;
  }
  std::vector<Node*> nodes;
  nodes.reserve(entries.size());
  // The first entry is the most recent: it gets the latest clock.
  const uint64_t base = clock_;
  clock_ += entries.size() + 1;
  for (size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    Node* parent = e.parent < 0 ? &root_ : nodes[size_t(e.parent)];
    if (parent != &root_ && parent->children.empty()) leaves_.erase(lru_key(parent));
    auto child = std::make_unique<Node>();
    child->key = e.key;
    child->page = e.page;
    child->serial = next_serial_++;
    child->parent = parent;
    child->last_use = base + entries.size() - i;
    leaves_.emplace(lru_key(child.get()), child.get());
    nodes.push_back(child.get());
    ++n_nodes_;
    parent->children.emplace(e.key, std::move(child));
  }
  return true;
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

int64_t RadixCache::drop_lora(int32_t lora) {
  if (lora < 0) return 0;
  // The adapter's first pages: page_size tokens, then the slot (and, salted, the salt).
  std::vector<std::vector<int32_t>> heads;
  for (const auto& [k, c] : root_.children)
    if (int64_t(k.size()) > page_size_ && k[size_t(page_size_)] == lora) heads.push_back(k);
  int64_t removed = 0;
  for (const auto& k : heads) {
    auto it = root_.children.find(k);
    std::vector<Node*> order;
    std::vector<Node*> stack{it->second.get()};
    while (!stack.empty()) {
      Node* n = stack.back();
      stack.pop_back();
      order.push_back(n);
      for (auto& [ck, c] : n->children) stack.push_back(c.get());
    }
    for (Node* n : order) {
      if (n->children.empty()) leaves_.erase(lru_key(n));
      pool_.release(n->page);
    }
    removed += int64_t(order.size());
    n_nodes_ -= int64_t(order.size());
    // Children first, iteratively (a long chain would recurse as deep as the prompt).
    for (auto o = order.rbegin(); o != order.rend(); ++o) (*o)->children.clear();
    root_.children.erase(it);
  }
  return removed;
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
