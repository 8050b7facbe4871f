// Radix prefix cache of one DP group: a tree over token ids at page granularity whose nodes own
// KV pool pages, so requests with a common prompt prefix reuse the pages instead of recomputing them.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "kv/kv_pool.h"

namespace dpserve {

// Only whole pages are shared: one node = one page = `page_size` token ids. The cache holds one pool
// reference on every page of the tree; a page also referenced by a request (refcount > 1) is in use.
// Unused leaves are evicted least recently used first. "Recent" is a logical counter bumped by every
// match/insert, never a clock, so every rank of a group evicts the same pages.
//
// LoRA: KV computed under an adapter differs from the base model's, so each adapter slot (`lora`,
// -1 = base) has its own subtree. An adapter's first page is keyed by its page_size tokens plus the
// slot as one more element, a key no base page (page_size elements) and no other adapter can equal;
// its later pages hang below it as usual, so requests of one adapter still share prefixes.
//
// Salt (vLLM's cache_salt): a salted request's first page is keyed by its tokens, the slot (-1 for
// the base model), the salt's length and its bytes four to an element: longer than any unsalted key,
// and equal only for the same adapter and the same salt, so only requests that know the salt share
// (and can time) each other's prefixes.
class RadixCache {
 public:
  explicit RadixCache(KVPool& pool);
  ~RadixCache();  // returns every page it still holds to the pool
  RadixCache(const RadixCache&) = delete;
  RadixCache& operator=(const RadixCache&) = delete;

  // Longest cached prefix of `tokens`, in whole pages, at most `max_pages`. Each returned page is
  // retained for the caller (release it, or keep it in a PageTable). With `count`, adds tokens.size()
  // to the query tokens and the matched tokens to the hits (a retried lookup passes false).
  std::vector<int32_t> match(std::span<const int32_t> tokens, int64_t max_pages, bool count = true,
                             int32_t lora = -1, std::string_view salt = {});

  // How many whole pages of `tokens` (at most `max_pages`) the tree holds, changing nothing (no
  // retain, no LRU touch, no hit counts): the scheduler's longest-prefix-match ordering asks it.
  int64_t cached_prefix_pages(std::span<const int32_t> tokens, int64_t max_pages, int32_t lora = -1,
                              std::string_view salt = {}) const;

  // Adds the first `n_pages` full pages of a sequence: page i holds tokens[i*ps, (i+1)*ps). Pages whose
  // prefix is already cached are left alone (the tree keeps its own copy); new ones are retained by the
  // cache. The caller still releases its own references afterwards. Returns the number of pages adopted.
  int64_t insert(std::span<const int32_t> tokens, std::span<const int32_t> pages, int64_t n_pages,
                 int32_t lora = -1, std::string_view salt = {});

  // Drops adapter slot `lora`'s whole subtree, salted requests' too (the adapter was unloaded: a later adapter loaded into
  // the same slot must never match KV computed under this one). Pages a request still holds stay
  // with it; the tree lets go of its own reference. Returns the nodes removed.
  int64_t drop_lora(int32_t lora);

  // Frees up to `n_pages` unused leaf pages, least recently used first (ties: oldest node). Returns
  // how many pages went back to the pool.
  int64_t evict(int64_t n_pages);

  // One node as the on-disk prefix cache stores it: its page's tokens, its page, and the index of
  // its parent in the same list (-1: a child of the root).
  struct Entry {
    int64_t parent = -1;
    std::vector<int32_t> key;
    int32_t page = -1;
  };
  // Up to `max_nodes` nodes, most recently used first and every parent before its children, so
  // every leading part of the list is itself a tree (a parent is used whenever its child is). Base
  // model pages only: adapter slots are numbered per start-up (--lora-paths order), so a file
  // written now could hand one adapter's KV to another after a restart.
  std::vector<Entry> export_nodes(int64_t max_nodes) const;
  // Adds `entries` (export_nodes' order, pages whose KV the caller has written) under the root; the
  // cache takes over the caller's reference to each page. Entries are recent-first: the LRU order
  // is kept. An entry whose parent is not there, or whose tokens are cached already, is refused:
  // false and nothing added (the caller still owns every page). Only into an empty tree.
  bool import_nodes(const std::vector<Entry>& entries);
  // Pages adopted by insert() so far (cumulative): the write-behind trigger counts them.
  int64_t inserted_pages() const { return inserted_pages_; }

  int64_t cached_pages() const { return n_nodes_; }
  int64_t evictable_pages() const;  // pages evict() could free now (walks the tree)
  int64_t hit_tokens() const { return hit_tokens_; }
  int64_t query_tokens() const { return query_tokens_; }
  int64_t evicted_pages() const { return evicted_pages_; }

 private:
  struct Node {
    std::vector<int32_t> key;  // the page's token ids
    int32_t page = -1;
    uint64_t last_use = 0;
    uint64_t serial = 0;  // creation order, the LRU tie break
    Node* parent = nullptr;
    std::map<std::vector<int32_t>, std::unique_ptr<Node>> children;  // ordered: deterministic walks
  };

  using LruKey = std::pair<uint64_t, uint64_t>;  // (last_use, serial): unique, never a pointer value
  static LruKey lru_key(const Node* n) { return {n->last_use, n->serial}; }
  void touch(Node* n);  // marks n used now, keeping leaves_ in step
  // Page i's key of `tokens` under adapter `lora` and `salt` into `key` (see the class comment).
  void page_key(std::span<const int32_t> tokens, int64_t i, int32_t lora, std::string_view salt,
                std::vector<int32_t>& key) const;

  KVPool& pool_;
  int64_t page_size_;
  Node root_;
  // Every leaf of the tree in LRU order, in use or not: eviction scans it from the oldest instead of
  // walking the whole tree (in-use leaves, at most one per running request, are skipped).
  std::map<LruKey, Node*> leaves_;
  uint64_t clock_ = 0;
  uint64_t next_serial_ = 1;
  int64_t n_nodes_ = 0;
  int64_t hit_tokens_ = 0, query_tokens_ = 0, evicted_pages_ = 0, inserted_pages_ = 0;
};

}  // namespace dpserve
